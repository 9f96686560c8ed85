// Package placement decides where virtual machines run: it rates every host
// for a VM from 0 to 5 stars with the reasons, places batches of VMs at once,
// and plans migrations that rebalance a host group. It is a pure library: no
// I/O, no goroutines, deterministic answers.
//
// # Model
//
// A Host has a capacity and a current use per Resource (CPU in MHz, memory in
// MiB, disk IOPS and MB/s, network Mb/s), a hard Reserve that no VM is given,
// storage volumes, a state, a host group, the disk formats and features it
// supports, and the VMs it runs. A VM asks for vCPUs and memory, and is
// expected to use CPU, disk and network: from its History (a Profile with
// mean, 95th percentile, peak and, optionally, a time series), else from
// Expected, else 20 % of one host core (Config.DefaultCPU). Memory is
// reserved in full.
//
// # Rating
//
// A Placer runs Filters, which turn hosts down with a reason (a *Rejection,
// errors.Is(err, ErrRejected)), and Weighted Scorers, which rate the rest
// from 0 to 1; the weighted mean gives the stars, in half stars. Rate returns
// every host, best first, ties by host ID, rejected hosts last with their
// reasons ("memory: needs 8.0 GiB, 5.5 GiB free after 2.0 GiB reserve"). The
// built-in filters are HostUp, InGroup, HasFeatures (features and disk
// format), Affinity (with and away from other VMs) and FitsResources (after
// reserves); the built-in scorer, Headroom, weighs what each host has left
// per resource by Config.Priority under the host group's Goal: LoadBalance
// prefers the most headroom, Consolidate the least, so that other hosts can
// be emptied and turned off. Plugins are values in Config; a plugin that
// fails or panics fails the call with a *PluginError naming it.
//
// # Batch placement and rebalancing
//
// Place assigns many VMs at once by vector bin packing: largest first by
// their dominant resource, each on the best-fitting host under its group's
// goal (L2 of the normalized room left; hosts in use first when
// consolidating), respecting everything Rate respects. When the VMs'
// histories carry time series, a host's CPU is checked bucket by bucket
// against the sum of its VMs' series, so VMs whose peaks do not coincide
// share a host. VMs that fit nowhere are reported with the reasons the hosts
// gave. Rebalance proposes migrations that bring a host group toward its
// goal, step by step, never overloading a host on the way.
package placement
