// Package consolidate plans the consolidation of physical machines into
// VMs on fewer hosts, from the machines' measured use (their history).
//
// Rank scores each Machine as a candidate, best first, with the reasons: the
// tail of its use (95th and 99th percentiles, peak) and its burstiness count,
// not only the mean, and machines that should stay physical (sustained high
// CPU, disk or network, too large for the target host, too little history)
// are listed last with why.
//
// Plan turns each Machine (its CPU capacity and a history.Series of CPU
// use in percent of it) into a placement.VM whose history carries the
// demand over time, packs the VMs with a placement.Placer so that the summed
// demand on a host stays below its CPU, less a Margin, at every interval
// (correlation-aware packing: machines whose peaks do not coincide share a
// host), and then replays the histories on the plan: the peak of each host,
// the intervals in which a host would have been overloaded, and the energy
// the used hosts would draw under a PowerModel.
//
// Simulate replays the histories as VMs on a data centre of SimHosts with a
// dynamic consolidation Policy: after each sample the policy may migrate
// VMs, and the replay counts energy, the time hosts were overloaded
// (SLATAH), the performance lost to migrations (PDM) and the migrations, as
// the CloudSim experiments of Beloglazov & Buyya do. Two policies come with
// the package: LRMMT, their LR-MMT (local regression, minimum migration
// time) as the baseline, and Dynamic, which packs with a placement.Placer
// against scenarios replayed from the VMs' recent joint changes.
//
// The power models include the HP ProLiant ML110 G4 and G5 servers of the
// CloudSim PlanetLab experiments (Beloglazov & Buyya, CCPE 24(13), 2012),
// both as their SPECpower tables and as linear approximations.
package consolidate
