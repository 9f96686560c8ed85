// Package vmmkit is an embeddable SDK for managing a fleet of virtualization
// hosts from one place. It holds no code; this is the map of its packages.
//
// Built:
//
//   - [github.com/vmmkit/vmmkit/vhd]: read, write and create VHD and VHDX
//     images (fixed, dynamic, differencing), with chains, extent walks,
//     crash-safe writes (the VHDX log included), conversion between raw,
//     VHD and VHDX, check and repair, diff, merge, flatten, compact and
//     resize (examples/vhdtool runs them).
//
//   - [github.com/vmmkit/vmmkit/p2v]: capture a physical disk into a VHD or
//     VHDX reading only the blocks its file systems use (MBR and GPT; ext2/3/4,
//     NTFS, FAT), at a consistent point in time (live passes, then a short
//     freeze), with block-differencing incremental passes, a manifest of
//     hashes, and a journal that makes every capture resumable
//     (examples/p2v runs it).
//
//   - [github.com/vmmkit/vmmkit/placement]: rate hosts for a VM (0–5 stars
//     with reasons) through filter and scorer plugins under load-balancing or
//     consolidation goals with hard reserves, place batches by vector bin
//     packing (time-series aware), and rebalance host groups with migrations;
//     [github.com/vmmkit/vmmkit/placement/history] reads utilization traces:
//     perfmon/typeperf CSV, PlanetLab, Bitbrains and a generic CSV
//     (examples/placement replays a Bitbrains experiment).
//
//   - [github.com/vmmkit/vmmkit/placement/consolidate]: rank physical
//     machines as consolidation candidates from their history and plan
//     which hosts they fit on over time, with energy (examples/consolidate
//     replays the PlanetLab reference setup, and Simulate replays days of
//     dynamic consolidation with migrations).
//
//   - [github.com/vmmkit/vmmkit/hostapi]: the Driver contract for
//     hypervisor hosts, with [github.com/vmmkit/vmmkit/hostapi/sim] (a
//     simulated fleet), [github.com/vmmkit/vmmkit/hostapi/libvirt] (KVM/QEMU
//     hosts over libvirt's RPC protocol, live migration included) and
//     [github.com/vmmkit/vmmkit/hostapi/hostapitest] (the conformance suite
//     both pass).
//
//   - [github.com/vmmkit/vmmkit/discovery]: find virtualization hosts in an
//     Active Directory OU over LDAPS or StartTLS, with simple or Kerberos
//     binds, paging, host groups from nested OUs and incremental sync
//     (examples/discovery lists them).
//
//   - [github.com/vmmkit/vmmkit/library]: shares (directories,
//     [github.com/vmmkit/vmmkit/library/s3share] for S3) of disks, ISOs,
//     hardware profiles, templates and scripts, indexed by content into
//     objects with replicas, the nearest picked for each site, and copied
//     in verified, resumable chunks (examples/library lists and replicates).
//
//   - [github.com/vmmkit/vmmkit/vmm]: the Manager facade: inventory (host
//     groups, hosts, VMs kept current from the hosts' events), persistent
//     jobs with progress, cancel, retry and resume after a crash, and the
//     workflows CreateVM, MigrateVM, Optimize, ConvertPhysical,
//     Consolidate and AddHostsFromAD, on an embedded SQLite store or on
//     PostgreSQL shared by several managers
//     ([github.com/vmmkit/vmmkit/vmm/store], with a conformance suite).
//     examples/quickstart runs it on a simulated fleet.
//
//   - [github.com/vmmkit/vmmkit/vmm/selfservice]: the self-service web
//     portal, an http.Handler: roles with templates, actions and quotas,
//     sign-in, CSRF, server-side ownership checks, live job progress
//     (examples/selfservice serves it with development users). Planned:
//     sign-in against Active Directory and a browser test.
package vmmkit
