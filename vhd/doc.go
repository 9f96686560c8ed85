// Package vhd reads and writes virtual hard disk images in the VHD and VHDX
// formats (fixed, dynamic and differencing): the formats of Virtual PC,
// Virtual Server, Hyper-V and Azure.
//
// A [Disk] is an open image. It reads like a file of the disk's virtual
// size through [Disk.ReadAt], and a writable one takes data through
// [Disk.WriteAt]: both follow the [io.ReaderAt] and [io.WriterAt] contracts
// for any offset and length. [Disk.Extents] lists the ranges that hold data,
// so that a copy can skip the holes.
//
//	d, err := vhd.Open("disk.vhd")
//	if err != nil {
//		return err
//	}
//	defer d.Close()
//	for e := range d.Extents() {
//		// read e.Offset to e.End()
//	}
//
// [Create] makes new images; [Open] and [OpenFile] open existing ones, and
// [NewDisk] reads one from any [io.ReaderAt]. [Convert] copies a raw, VHD or
// VHDX image into a new one of any of the three formats, reading only the
// data and never writing zeros.
//
// # VHDX
//
// VHDX images are read and written with the same [Disk] API: headers with
// CRC-32C checksums and sequence numbers, region tables, metadata (block
// size, logical and physical sector size, 512e and 4Kn, virtual size, page
// 83 data, parent locator), the BAT with its chunk ratio, and the payload
// block states (not present, undefined, zero, unmapped, fully and partially
// present). Their sector bitmaps are LSB-first, where VHD's are MSB-first.
// Images made by [Create] look like Hyper-V's: 1 MiB alignment, a 1 MiB
// log, 32 MiB blocks for dynamic and fixed images and 2 MiB for
// differencing ones, 512-byte logical and 4096-byte physical sectors unless
// [CreateOptions] say otherwise.
//
// Every metadata change goes through the VHDX log: changed BAT and sector
// bitmap pages are held in memory until [Disk.Sync] (or until many pages
// are pending), then the data is synced, the pages are written to the log
// and synced, written in place and synced. Opening an image whose log holds
// changes (one not closed cleanly) replays it first: into the file for a
// writable open, into memory for a read-only one, which leaves the file
// untouched. A differencing VHDX names its parent by the parent's data
// write GUID, which changes whenever the parent is written, so a child of a
// changed parent is refused with [ErrParent].
//
// # Differencing images
//
// A differencing image records the blocks written since it was made from a
// parent; other sectors read through to the parent, sector by sector, as
// the child's sector bitmaps say. Parents are found through the child's
// parent locators: the relative Windows path (VHD W2ru, VHDX
// relative_path), the absolute Windows path (W2ku, absolute_win32_path,
// with backslashes), the file URL of Mac hosts (MacX) and, last, the
// recorded parent name next to the child.
// The parent must carry the UUID the child records, and the time stamp the
// child records must be the parent's footer time stamp or its file's
// modification time (see [OpenOptions.IgnoreParentTimestamp]). Chains may be
// of any depth; a chain that loops is an error. Parents are opened
// read-only, through [OpenOptions.OpenParent] when it is set, and closed
// with the child. A parent that cannot be found is reported as a
// [*ParentError] that lists every path tried.
//
// # Sizes and geometry
//
// A VHD footer records the disk size twice: as a byte count (the current
// size) and as a cylinder/head/sector geometry that addresses at most about
// 127.5 GiB. Readers disagree on which one counts:
//
//   - Hyper-V, Azure, libvhdi and this package use the current size.
//   - Virtual PC uses the geometry.
//   - qemu uses the geometry, except for images whose creator is "win "
//     (Hyper-V), "qem2" (qemu-img with force_size), "d2v " (Disk2vhd),
//     "CTXS" or "tap" (Citrix), and except when the geometry is the maximum,
//     65535/16/255; then it uses the current size.
//
// Creators write them accordingly: Virtual PC and qemu-img (creator "qemu")
// round the size up to the next whole geometry and record both; Hyper-V
// ("win ") and qemu-img with force_size ("qem2") keep the requested size.
// Hyper-V records the largest geometry that fits, qemu-img with force_size
// records the maximum geometry.
//
// [Create] (creator "vmmk") keeps the requested size, rounded up to a whole
// sector, so that every reader that uses the current size sees exactly that
// size. It records the geometry of the specification when that geometry
// describes the size exactly, and the maximum geometry otherwise, so that
// qemu reads the current size too. With [CreateOptions.RoundToGeometry] it
// rounds the size up to a whole geometry instead, as qemu-img does, for
// readers that use the geometry. Azure wants fixed images whose size is a
// whole number of MiB. [Info.Geometry] reports what an image records.
//
// # Crash safety
//
// Writes go straight to the file; no metadata is cached, and [Disk.Sync]
// makes everything written so far durable. A new block is added in an order
// that keeps the image valid at every step of a crash: its data and sector
// bitmap are written at the end of the file (over the trailing footer, for
// which the copy at offset 0 stands in; a differencing image's block starts
// after the old footer instead), the footer is written after the block, and
// then the block's BAT entry.
//
// If the writing process is killed at any point, the image opens and every
// range written before reads back as written. If the machine loses power,
// the writes since the last Sync may reach the disk in any order; the image
// still opens, every range synced before reads back as synced, and a sector
// that a later, unsynced write touched reads as before, as written, or as
// zeros. A block whose BAT entry reached the disk while the file's new size
// did not reads as zeros past the end of the file. A writable open repairs
// a missing trailing footer.
//
// # Limits
//
// VHD images hold at most 2040 GiB ([MaxVHDSize]) in blocks of 512 B to
// 256 MiB; VHDX images hold at most 64 TiB in blocks of 1 MiB to 256 MiB.
// [Check], [Diff], [Merge], [Flatten], [Compact] and [Resize] work on both
// formats.
// Malformed images give a [*FormatError] that says which structure is wrong
// and where; such input never panics and never makes the package allocate
// more than the file holds.
//
// [VHD specification]: https://learn.microsoft.com/en-us/windows/win32/vstor/about-vhd
// [VHDX specification]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-vhdx/83f6b700-6216-40f0-aa99-9fcb421206e2
package vhd
