// Package p2v captures a physical disk into a VHD or VHDX image at the speed
// of the disk: it reads only the blocks that the disk's file systems use,
// makes the capture consistent while the machine keeps running, and
// re-captures incrementally so that only changed blocks move.
//
// # Capturing
//
// A Source is anything that reads like a disk; OpenDevice opens a block
// device (with O_DIRECT, so that every pass sees what the file system wrote)
// or a raw image file. Capture writes the image and a manifest beside it:
//
//	dev, err := p2v.OpenDevice("/dev/sdb")
//	...
//	res, err := p2v.Capture(ctx, dev, "server.vhdx", nil)
//
// # Used blocks
//
// Analyze reads the partition table (MBR with its chain of extended boot
// records, or GPT with its backup) and, inside every partition, the
// allocation map of the file system: the block bitmaps of ext2, ext3 and
// ext4, the $Bitmap of NTFS, the FAT of FAT12, FAT16 and FAT32. It never
// mounts anything. Capture reads only what those maps mark used; everything
// else — boot records, the partition tables, gaps between partitions, the
// backup GPT, and any partition whose file system is unknown or damaged — is
// read whole and copied except for all-zero pages, which is always safe. A
// damaged structure is reported in Layout.Warnings as an *FSError.
//
// # Incremental captures and the manifest
//
// The manifest (ManifestPath) holds an XXH3-128 hash of every chunk (1 MiB
// by default) of the disk as the image holds it. With Options.Previous,
// Capture hashes the source again and writes only the chunks whose hash
// changed, either into a new differencing image whose parent is the previous
// one (history kept; the previous image is never written) or, with
// Options.InPlace, into the previous image itself. A manifest that does not
// belong to its image (another image's UUID, or content that no longer
// matches a sample of its hashes) is refused with a *ManifestError.
//
// # Consistency
//
// A capture of a disk that is in use sees blocks from different moments. A
// Snapshotter gives Capture a point in time: Capture runs live passes until
// one of them changes little (Options.ConvergeBytes), then freezes the source
// for one last pass and thaws it, so the freeze lasts as long as reading the
// used blocks and writing the last few changes. FSFreezer freezes a mounted
// Linux file system (FIFREEZE); Offline is for disks nothing writes to. The
// freeze is bounded by Options.MaxFreeze: a watchdog thaws the source when it
// runs out, and Capture converges again and retries.
//
// # Crashes and resuming
//
// While it runs, Capture keeps a journal beside the image: before writing a
// range of chunks it records the intent and syncs, and after syncing the
// image it records the new hashes. Running the same Capture again after a
// crash, a kill or a cancelled context continues from the last checkpoint
// (Result.Resumed) and ends with the image an uninterrupted capture makes;
// chunks that were being written when it stopped are written again whatever
// the source holds now. The manifest is replaced atomically at the end.
//
// # Faults
//
// Unreadable sectors fail the capture with a *ReadError naming the byte
// range, or, with Options.ZeroBadSectors, are captured as zeros and listed in
// Result.BadRanges. A source that shrinks or disappears fails with
// ErrSourceChanged; a full destination fails with the file system's error
// (errors.Is(err, syscall.ENOSPC)) and the capture can be resumed once there
// is room. Verify re-reads a source and compares it with an image.
package p2v
