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
// suite every backend passes.
//
// # Content identity
//
// Content is hashed in chunks of ChunkSize (8 MiB) with BLAKE3 (or
// SHA-256); its Manifest holds the chunk sums and its ID is the hash of the
// size and the sums. The same ID on two shares is one logical object with
// two replicas. Transfers check every chunk they read against the
// manifest, so a replica that no longer matches its hash is reported and
// never served.
package library
