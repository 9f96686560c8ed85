// Package library keeps the images and definitions that VMs are made from —
// virtual disks (VHD, VHDX, raw), ISO images, hardware profiles, guest OS
// profiles, templates and scripts — on several shares, each at a site, and
// moves them to where they are deployed.
//
// # Shares
//
// A Share is a backend: a directory (DirShare) or an S3-compatible bucket
// (package library/s3share). Shares list, stat, open for random-access
// reads, and write through resumable Uploads whose content appears under
// its name only when whole. Package library/sharetest is the conformance
// suite every backend passes. Names are relative slash-separated paths;
// CheckName refuses "..", absolute paths and the names shares keep for
// themselves (".vmmkit*"). Every failure is a *ShareError wrapping
// ErrNotFound, ErrExist, ErrInvalidName, ErrOffline, ErrPermission,
// ErrNoSpace, ErrBusy or ErrCorrupt.
//
// # Content identity
//
// Content is hashed in chunks of ChunkSize (8 MiB) with BLAKE3 (or
// SHA-256); its Manifest holds the chunk sums and its ID is the hash of the
// size and the sums. The same ID on two shares is one logical object with
// two replicas. Transfers check every chunk they read against the
// manifest, so a replica that no longer matches its hash is reported and
// never served.
//
// # The library
//
// A Library (New) indexes its shares: Refresh scans them concurrently,
// reuses what it knew of files whose size, modification time and version
// are unchanged (also across processes, with Options.CacheDir), hashes
// the others, and groups equal content into Objects with one Replica per
// copy. Each object has a Kind and what its kind tells: a disk's format,
// type, virtual size and parent (from package vhd), an ISO's volume label
// (ReadISO), the parsed JSON of a hardware profile, guest OS profile or
// template, and metadata from a NAME.meta.json sidecar. A broken file is
// an object with a Problem; a share that is offline keeps its replicas,
// marked Offline.
//
// Nearest picks the replica cheapest to move to a site (Options.Costs).
// Copy and CopyToFile move content chunk by chunk in parallel, verified,
// resumable after a crash or a cancel (a restart writes only what is
// missing), and visible only when whole. Replicate and CopyToHost do that
// from the nearest sound replica, falling back past corrupt or offline
// ones, and Deploy puts a disk on a host through its hostapi.Driver,
// copied whole or as a differencing disk over a parent the host caches.
package library
