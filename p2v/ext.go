package p2v

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// Layout of the ext2/3/4 superblock: byte offsets within the 1024-byte
// superblock, which itself starts at byte 1024 of the file system.
const (
	extSuperOff  = 1024
	extSuperSize = 1024
	extMagic     = 0xEF53

	extSBInodesCount      = 0x00
	extSBBlocksCountLo    = 0x04
	extSBFirstDataBlock   = 0x14
	extSBLogBlockSize     = 0x18
	extSBLogClusterSize   = 0x1C
	extSBBlocksPerGroup   = 0x20
	extSBClustersPerGroup = 0x24
	extSBInodesPerGroup   = 0x28
	extSBMagic            = 0x38
	extSBState            = 0x3A
	extSBRevLevel         = 0x4C
	extSBInodeSize        = 0x58
	extSBFeatureCompat    = 0x5C
	extSBFeatureIncompat  = 0x60
	extSBFeatureROCompat  = 0x64
	extSBUUID             = 0x68
	extSBReservedGDT      = 0xCE
	extSBJournalInum      = 0xE0
	extSBDescSize         = 0xFE
	extSBFirstMetaBG      = 0x104
	extSBBlocksCountHi    = 0x150
	extSBMMPBlock         = 0x168
	extSBChecksumType     = 0x175
	extSBBackupBGs        = 0x24C
	extSBChecksumSeed     = 0x270
	extSBChecksum         = 0x3FC
)

// Superblock state and feature flags.
const (
	extStateValid = 0x0001 // cleanly unmounted (cleared while mounted without a journal)
	extStateError = 0x0002

	extCompatHasJournal   = 0x0004
	extCompatSparseSuper2 = 0x0200

	extIncompatFiletype   = 0x00002
	extIncompatRecover    = 0x00004
	extIncompatJournalDev = 0x00008
	extIncompatMetaBG     = 0x00010
	extIncompat64Bit      = 0x00080
	extIncompatMMP        = 0x00100
	extIncompatFlexBG     = 0x00200
	extIncompatCsumSeed   = 0x02000
	// extIncompatKnown lists the incompatible features whose on-disk
	// allocation structures this parser understands: filetype, recover,
	// meta_bg, extents, 64bit, mmp, flex_bg, ea_inode, dirdata, csum_seed,
	// largedir, inline_data, encrypt, casefold. Compression (0x1) and
	// journal_dev (0x8) are left out.
	extIncompatKnown = 0x00002 | 0x00004 | 0x00010 | 0x00040 | 0x00080 |
		0x00100 | 0x00200 | 0x00400 | 0x01000 | 0x02000 | 0x04000 |
		0x08000 | 0x10000 | 0x20000

	extROCompatSparseSuper  = 0x0001
	extROCompatLargeFile    = 0x0002
	extROCompatBtreeDir     = 0x0004
	extROCompatGDTCsum      = 0x0010
	extROCompatBigalloc     = 0x0200
	extROCompatMetadataCsum = 0x0400
	// extROCompatKnown lists the read-only-compatible features this parser
	// understands: sparse_super, large_file, btree_dir, huge_file, gdt_csum,
	// dir_nlink, extra_isize, quota, bigalloc, metadata_csum, readonly,
	// project, shared_blocks, verity, orphan_present. Snapshots (0x80) and
	// replica (0x800) are left out.
	extROCompatKnown = 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0010 |
		0x0020 | 0x0040 | 0x0100 | 0x0200 | 0x0400 | 0x1000 | 0x2000 |
		0x4000 | 0x8000 | 0x10000
)

// Group descriptor layout (byte offsets) and flags.
const (
	extGDBlockBitmapLo     = 0x00
	extGDInodeBitmapLo     = 0x04
	extGDInodeTableLo      = 0x08
	extGDFreeBlocksLo      = 0x0C
	extGDFlags             = 0x12
	extGDBlockBitmapCsumLo = 0x18
	extGDChecksum          = 0x1E
	extGDBlockBitmapHi     = 0x20
	extGDInodeBitmapHi     = 0x24
	extGDInodeTableHi      = 0x28
	extGDFreeBlocksHi      = 0x2C
	extGDBlockBitmapCsumHi = 0x38

	extGDMinSize   = 32
	extGDMinSize64 = 64
	extGDMaxSize   = 1024

	// extBGBlockUninit marks a group whose block bitmap was never written:
	// only the group's own metadata is in use.
	extBGBlockUninit = 0x0002
)

// extFS is the geometry of an ext2/3/4 file system, taken from its
// superblock. Block numbers and counts are in file-system blocks; a cluster
// (the unit of the block bitmap) is clusterRatio blocks.
type extFS struct {
	r    io.ReaderAt
	size int64
	sb   []byte // the raw superblock

	compat, incompat, roCompat uint32

	blockSize        uint64
	clusterRatio     uint64
	blocksCount      uint64
	firstDataBlock   uint64
	blocksPerGroup   uint64
	clustersPerGroup uint64
	inodesPerGroup   uint64
	inodeSize        uint64
	itablePerGroup   uint64 // inode table blocks per group
	groupCount       uint64
	descSize         uint64
	descPerBlock     uint64
	descBlocks       uint64 // blocks of the whole descriptor table
	reservedGDT      uint64
	firstMetaBG      uint64
	backupBGs        [2]uint64 // sparse_super2 backup groups
	csumSeed         uint32    // metadata_csum seed
}

// extGroup is what the parser keeps of one group descriptor.
type extGroup struct {
	blockBitmap, inodeBitmap, inodeTable uint64
	bitmapCsum                           uint32
	flags                                uint16
}

// extExtent is the block range [start, end).
type extExtent struct{ start, end uint64 }

// parseExt is the fsParser of ext2, ext3 and ext4. It reads the superblock
// at byte 1024 and the group descriptors, then reports as free the clusters
// that the block bitmaps mark free and that hold no group metadata. Groups
// flagged BLOCK_UNINIT have no bitmap on disk; their free clusters are all
// but the group's metadata, computed as the kernel does. Descriptor and
// bitmap checksums (gdt_csum, metadata_csum) are verified.
//
// A file system that has errors recorded or that uses features this parser
// does not know is reported as a *FSError, so that the caller copies it
// whole. One whose journal holds transactions still to replay, or that is
// mounted without a journal, gets a map marked Stale.
func parseExt(r io.ReaderAt, size int64) (*fsUsage, error) {
	fs, err := readExtSuper(r, size)
	if err != nil {
		return nil, err
	}
	groups, err := fs.readGroups()
	if err != nil {
		return nil, err
	}
	stale, err := fs.staleReason(groups)
	if err != nil {
		return nil, err
	}
	free, err := fs.freeRanges(groups, fs.metadata(groups))
	if err != nil {
		return nil, err
	}
	return &fsUsage{
		Type:      fs.typeName(),
		BlockSize: int64(fs.blockSize * fs.clusterRatio),
		Free:      free,
		Stale:     stale,
	}, nil
}

// extErr returns a *FSError for the structure at byte off.
func extErr(off int64, format string, args ...any) *FSError {
	return &FSError{FS: "ext4", Off: off, Reason: fmt.Sprintf(format, args...)}
}

// extSBErr returns a *FSError for the superblock field at offset field.
func extSBErr(field int, format string, args ...any) *FSError {
	return extErr(extSuperOff+int64(field), format, args...)
}

// extReadAt fills p from offset off of r.
func extReadAt(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("p2v: ext: reading %d bytes at byte %d: %w", len(p), off, err)
}

// readExtSuper reads and checks the superblock and derives the geometry.
func readExtSuper(r io.ReaderAt, size int64) (*extFS, error) {
	if size < extSuperOff+extSuperSize {
		return nil, fmt.Errorf("%w: %d bytes is too small for an ext2/3/4 file system", errNotFS, size)
	}
	sb := make([]byte, extSuperSize)
	if err := extReadAt(r, sb, extSuperOff); err != nil {
		return nil, err
	}
	le16 := func(off int) uint64 { return uint64(binary.LittleEndian.Uint16(sb[off:])) }
	le32 := func(off int) uint64 { return uint64(binary.LittleEndian.Uint32(sb[off:])) }
	if le16(extSBMagic) != extMagic {
		return nil, fmt.Errorf("%w: no ext2/3/4 magic at byte %d", errNotFS, extSuperOff+extSBMagic)
	}
	fs := &extFS{
		r:        r,
		size:     size,
		sb:       sb,
		compat:   uint32(le32(extSBFeatureCompat)),
		incompat: uint32(le32(extSBFeatureIncompat)),
		roCompat: uint32(le32(extSBFeatureROCompat)),
	}
	if err := fs.checkFeatures(); err != nil {
		return nil, err
	}
	if err := fs.setBlockGeometry(le32); err != nil {
		return nil, err
	}
	if err := fs.setGroupGeometry(le16, le32); err != nil {
		return nil, err
	}
	if err := fs.setDescGeometry(le16, le32); err != nil {
		return nil, err
	}
	return fs, nil
}

// checkFeatures refuses file systems whose allocation structures this parser
// cannot read with confidence, and checks the superblock checksum.
func (fs *extFS) checkFeatures() error {
	sb := fs.sb
	if rev := binary.LittleEndian.Uint32(sb[extSBRevLevel:]); rev > 1 {
		return extSBErr(extSBRevLevel, "unsupported revision level %d", rev)
	}
	if st := binary.LittleEndian.Uint16(sb[extSBState:]); st&extStateError != 0 {
		return extSBErr(extSBState, "file system has errors recorded (state %#x); run e2fsck", st)
	}
	if fs.incompat&extIncompatJournalDev != 0 {
		return extSBErr(extSBFeatureIncompat, "external journal device, not a file system")
	}
	if u := fs.incompat &^ extIncompatKnown; u != 0 {
		return extSBErr(extSBFeatureIncompat, "unsupported incompatible features %#x", u)
	}
	if u := fs.roCompat &^ extROCompatKnown; u != 0 {
		return extSBErr(extSBFeatureROCompat, "unsupported read-only-compatible features %#x", u)
	}
	if !fs.has(0, 0, extROCompatMetadataCsum) {
		return nil
	}
	if t := sb[extSBChecksumType]; t != 1 {
		return extSBErr(extSBChecksumType, "unknown metadata checksum type %d", t)
	}
	want := binary.LittleEndian.Uint32(sb[extSBChecksum:])
	if got := extCRC32c(^uint32(0), sb[:extSBChecksum]); got != want {
		return extSBErr(extSBChecksum, "superblock checksum is %#08x, computed %#08x", want, got)
	}
	if fs.has(0, extIncompatCsumSeed, 0) {
		fs.csumSeed = binary.LittleEndian.Uint32(sb[extSBChecksumSeed:])
	} else {
		fs.csumSeed = extCRC32c(^uint32(0), sb[extSBUUID:extSBUUID+16])
	}
	return nil
}

// setBlockGeometry reads the block and cluster sizes and the block count.
func (fs *extFS) setBlockGeometry(le32 func(int) uint64) error {
	logBlock := le32(extSBLogBlockSize)
	if logBlock > 6 {
		return extSBErr(extSBLogBlockSize, "block size 1024<<%d is larger than 64 KiB", logBlock)
	}
	fs.blockSize = 1024 << logBlock
	logCluster := le32(extSBLogClusterSize)
	fs.clusterRatio = 1
	if fs.has(0, 0, extROCompatBigalloc) {
		if logCluster < logBlock || logCluster > 20 {
			return extSBErr(extSBLogClusterSize, "cluster size 1024<<%d is invalid for block size %d", logCluster, fs.blockSize)
		}
		fs.clusterRatio = 1 << (logCluster - logBlock)
	} else if logCluster != logBlock {
		return extSBErr(extSBLogClusterSize, "cluster size 1024<<%d differs from block size %d without bigalloc", logCluster, fs.blockSize)
	}

	fs.firstDataBlock = le32(extSBFirstDataBlock)
	want := uint64(0)
	if fs.blockSize == 1024 && fs.clusterRatio == 1 {
		want = 1
	}
	if fs.firstDataBlock != want {
		return extSBErr(extSBFirstDataBlock, "first data block is %d, want %d for %d-byte blocks", fs.firstDataBlock, want, fs.blockSize)
	}

	fs.blocksCount = le32(extSBBlocksCountLo)
	if fs.has(0, extIncompat64Bit, 0) {
		fs.blocksCount |= le32(extSBBlocksCountHi) << 32
	}
	if fs.blocksCount <= fs.firstDataBlock {
		return extSBErr(extSBBlocksCountLo, "block count %d is too small", fs.blocksCount)
	}
	if avail := uint64(fs.size) / fs.blockSize; fs.blocksCount > avail {
		return extSBErr(extSBBlocksCountLo, "block count %d exceeds the %d blocks of %d bytes that the %d-byte source holds",
			fs.blocksCount, avail, fs.blockSize, fs.size)
	}
	return nil
}

// setGroupGeometry reads the block group sizes and derives the group count.
func (fs *extFS) setGroupGeometry(le16, le32 func(int) uint64) error {
	bitsPerBlock := fs.blockSize * 8
	fs.blocksPerGroup = le32(extSBBlocksPerGroup)
	fs.clustersPerGroup = fs.blocksPerGroup
	if fs.clusterRatio > 1 {
		fs.clustersPerGroup = le32(extSBClustersPerGroup)
		if fs.blocksPerGroup != fs.clustersPerGroup*fs.clusterRatio {
			return extSBErr(extSBClustersPerGroup, "%d clusters of %d blocks per group do not make %d blocks per group",
				fs.clustersPerGroup, fs.clusterRatio, fs.blocksPerGroup)
		}
	}
	if fs.clustersPerGroup < 8 || fs.clustersPerGroup > bitsPerBlock {
		return extSBErr(extSBBlocksPerGroup, "%d clusters per group is outside [8, %d]", fs.clustersPerGroup, bitsPerBlock)
	}

	fs.inodeSize = 128
	if binary.LittleEndian.Uint32(fs.sb[extSBRevLevel:]) > 0 {
		fs.inodeSize = le16(extSBInodeSize)
	}
	if fs.inodeSize < 128 || fs.inodeSize > fs.blockSize || fs.inodeSize&(fs.inodeSize-1) != 0 {
		return extSBErr(extSBInodeSize, "invalid inode size %d", fs.inodeSize)
	}
	fs.inodesPerGroup = le32(extSBInodesPerGroup)
	if fs.inodesPerGroup < fs.blockSize/fs.inodeSize || fs.inodesPerGroup > bitsPerBlock {
		return extSBErr(extSBInodesPerGroup, "%d inodes per group is outside [%d, %d]",
			fs.inodesPerGroup, fs.blockSize/fs.inodeSize, bitsPerBlock)
	}
	fs.itablePerGroup = extCeilDiv(fs.inodesPerGroup*fs.inodeSize, fs.blockSize)

	fs.groupCount = extCeilDiv(fs.blocksCount-fs.firstDataBlock, fs.blocksPerGroup)
	if n := le32(extSBInodesCount); n != fs.groupCount*fs.inodesPerGroup {
		return extSBErr(extSBInodesCount, "inode count %d is not %d groups of %d inodes",
			n, fs.groupCount, fs.inodesPerGroup)
	}
	return nil
}

// setDescGeometry reads the size and placement of the group descriptors.
func (fs *extFS) setDescGeometry(le16, le32 func(int) uint64) error {
	fs.descSize = extGDMinSize
	if fs.has(0, extIncompat64Bit, 0) {
		fs.descSize = le16(extSBDescSize)
		if fs.descSize < extGDMinSize64 || fs.descSize > extGDMaxSize || fs.descSize&(fs.descSize-1) != 0 {
			return extSBErr(extSBDescSize, "invalid group descriptor size %d", fs.descSize)
		}
	}
	fs.descPerBlock = fs.blockSize / fs.descSize
	fs.descBlocks = extCeilDiv(fs.groupCount, fs.descPerBlock)

	fs.reservedGDT = le16(extSBReservedGDT)
	if fs.reservedGDT > fs.blockSize/4 {
		return extSBErr(extSBReservedGDT, "%d reserved GDT blocks is absurd", fs.reservedGDT)
	}
	if fs.has(0, extIncompatMetaBG, 0) {
		fs.firstMetaBG = le32(extSBFirstMetaBG)
		if fs.firstMetaBG > fs.descBlocks {
			return extSBErr(extSBFirstMetaBG, "first meta block group %d is past the %d descriptor blocks",
				fs.firstMetaBG, fs.descBlocks)
		}
	}
	// The superblock and the descriptor blocks that follow it (with the
	// reserved GDT blocks) must fit in group 0.
	if end := fs.superBlock() + 1 + fs.oldDescBlocks() + fs.reservedGDT; end > fs.groupEnd(0) {
		return extSBErr(extSBReservedGDT, "superblock, %d descriptor blocks and %d reserved GDT blocks overflow group 0 (%d blocks)",
			fs.oldDescBlocks(), fs.reservedGDT, fs.groupEnd(0)-fs.firstDataBlock)
	}
	if fs.has(extCompatSparseSuper2, 0, 0) {
		fs.backupBGs[0] = le32(extSBBackupBGs)
		fs.backupBGs[1] = le32(extSBBackupBGs + 4)
	}
	return nil
}

// has reports whether any of the given compat, incompat or ro_compat feature
// bits is set.
func (fs *extFS) has(compat, incompat, roCompat uint32) bool {
	return fs.compat&compat != 0 || fs.incompat&incompat != 0 || fs.roCompat&roCompat != 0
}

// typeName classifies the file system as the kernel driver that could mount
// it: ext2 and ext3 know only a few features beyond the original format.
func (fs *extFS) typeName() string {
	const ext3Incompat = extIncompatFiletype | extIncompatRecover | extIncompatMetaBG
	const ext3ROCompat = extROCompatSparseSuper | extROCompatLargeFile | extROCompatBtreeDir
	switch {
	case fs.incompat&^ext3Incompat != 0 || fs.roCompat&^ext3ROCompat != 0:
		return "ext4"
	case fs.has(extCompatHasJournal, 0, 0):
		return "ext3"
	}
	return "ext2"
}

// superBlock returns the block that holds the primary superblock.
func (fs *extFS) superBlock() uint64 { return extSuperOff / fs.blockSize }

// groupFirst returns the first block of group g.
func (fs *extFS) groupFirst(g uint64) uint64 { return fs.firstDataBlock + g*fs.blocksPerGroup }

// groupEnd returns the block just past group g.
func (fs *extFS) groupEnd(g uint64) uint64 {
	return min(fs.groupFirst(g)+fs.blocksPerGroup, fs.blocksCount)
}

// oldDescBlocks returns the number of descriptor blocks that follow each
// superblock copy, as opposed to the per-meta-group blocks of meta_bg.
func (fs *extFS) oldDescBlocks() uint64 {
	if fs.has(0, extIncompatMetaBG, 0) {
		return fs.firstMetaBG
	}
	return fs.descBlocks
}

// hasSuper reports whether group g holds a superblock copy.
func (fs *extFS) hasSuper(g uint64) bool {
	switch {
	case g == 0:
		return true
	case fs.has(extCompatSparseSuper2, 0, 0):
		return g == fs.backupBGs[0] || g == fs.backupBGs[1]
	case g == 1 || !fs.has(0, 0, extROCompatSparseSuper):
		return true
	case g%2 == 0:
		return false
	}
	return extIsPowerOf(g, 3) || extIsPowerOf(g, 5) || extIsPowerOf(g, 7)
}

// extIsPowerOf reports whether n is a power of base.
func extIsPowerOf(n, base uint64) bool {
	for n > 1 && n%base == 0 {
		n /= base
	}
	return n == 1
}

// descBlockLoc returns the block that holds descriptor block i.
func (fs *extFS) descBlockLoc(i uint64) uint64 {
	if !fs.has(0, extIncompatMetaBG, 0) || i < fs.firstMetaBG {
		return fs.superBlock() + 1 + i
	}
	// With meta_bg, the descriptors of meta group i are in the first block
	// of its first group, after the superblock copy if there is one.
	g := i * fs.descPerBlock
	loc := fs.groupFirst(g)
	if fs.hasSuper(g) {
		loc++
	}
	if i == 0 && fs.blockSize == 1024 && fs.firstDataBlock == 0 {
		loc++ // bigalloc with 1 KiB blocks: block 0 is the boot block
	}
	return loc
}

// groupOverhead returns the range of blocks at the start of group g that
// hold a superblock copy, group descriptors and reserved GDT blocks.
func (fs *extFS) groupOverhead(g uint64) extExtent {
	start := fs.groupFirst(g)
	if start == 0 && fs.blockSize == 1024 {
		start = 1 // the superblock follows the boot block
	}
	var n uint64
	super := fs.hasSuper(g)
	if super {
		n = 1
	}
	if !fs.has(0, extIncompatMetaBG, 0) || g/fs.descPerBlock < fs.firstMetaBG {
		if super {
			n += fs.oldDescBlocks() + fs.reservedGDT
		}
	} else if r := g % fs.descPerBlock; r == 0 || r == 1 || r == fs.descPerBlock-1 {
		n++
	}
	return extExtent{start, start + n}
}

// readGroups reads and checks every group descriptor.
func (fs *extFS) readGroups() ([]extGroup, error) {
	groups := make([]extGroup, 0, min(fs.groupCount, 1<<16))
	buf := make([]byte, fs.blockSize)
	for i := uint64(0); i < fs.descBlocks; i++ {
		loc := fs.descBlockLoc(i)
		if loc >= fs.blocksCount {
			return nil, extSBErr(extSBFirstMetaBG, "descriptor block %d lies at block %d, past the %d blocks", i, loc, fs.blocksCount)
		}
		if err := extReadAt(fs.r, buf, int64(loc*fs.blockSize)); err != nil {
			return nil, err
		}
		for j := uint64(0); j < fs.descPerBlock && uint64(len(groups)) < fs.groupCount; j++ {
			d := buf[j*fs.descSize : (j+1)*fs.descSize]
			off := int64(loc*fs.blockSize + j*fs.descSize)
			g, err := fs.parseGroup(uint64(len(groups)), d, off)
			if err != nil {
				return nil, err
			}
			groups = append(groups, g)
		}
	}
	return groups, nil
}

// parseGroup decodes and checks descriptor d of group g, found at byte off.
func (fs *extFS) parseGroup(g uint64, d []byte, off int64) (extGroup, error) {
	le16 := func(o int) uint64 { return uint64(binary.LittleEndian.Uint16(d[o:])) }
	le32 := func(o int) uint64 { return uint64(binary.LittleEndian.Uint32(d[o:])) }
	if fs.has(0, 0, extROCompatGDTCsum|extROCompatMetadataCsum) {
		if want, got := uint16(le16(extGDChecksum)), fs.descCsum(g, d); want != got {
			return extGroup{}, extErr(off+extGDChecksum, "group %d descriptor checksum is %#04x, computed %#04x", g, want, got)
		}
	}
	gd := extGroup{
		blockBitmap: le32(extGDBlockBitmapLo),
		inodeBitmap: le32(extGDInodeBitmapLo),
		inodeTable:  le32(extGDInodeTableLo),
		bitmapCsum:  uint32(le16(extGDBlockBitmapCsumLo)),
		flags:       uint16(le16(extGDFlags)),
	}
	free := le16(extGDFreeBlocksLo)
	if fs.has(0, extIncompat64Bit, 0) {
		gd.blockBitmap |= le32(extGDBlockBitmapHi) << 32
		gd.inodeBitmap |= le32(extGDInodeBitmapHi) << 32
		gd.inodeTable |= le32(extGDInodeTableHi) << 32
		gd.bitmapCsum |= uint32(le16(extGDBlockBitmapCsumHi)) << 16
		free |= le16(extGDFreeBlocksHi) << 16
	}
	if n := fs.groupClusters(g); free > n {
		return extGroup{}, extErr(off+extGDFreeBlocksLo, "group %d claims %d free clusters but has only %d", g, free, n)
	}
	if err := fs.checkGroupLoc(g, "block bitmap", gd.blockBitmap, 1, off+extGDBlockBitmapLo); err != nil {
		return extGroup{}, err
	}
	if err := fs.checkGroupLoc(g, "inode bitmap", gd.inodeBitmap, 1, off+extGDInodeBitmapLo); err != nil {
		return extGroup{}, err
	}
	if err := fs.checkGroupLoc(g, "inode table", gd.inodeTable, fs.itablePerGroup, off+extGDInodeTableLo); err != nil {
		return extGroup{}, err
	}
	return gd, nil
}

// checkGroupLoc checks that the n blocks from blk, a structure of group g
// named what, lie in the file system (in group g without flex_bg) and clear
// of the primary superblock and descriptors, as the kernel does.
func (fs *extFS) checkGroupLoc(g uint64, what string, blk, n uint64, off int64) error {
	first, end := fs.firstDataBlock, fs.blocksCount
	if !fs.has(0, extIncompatFlexBG, 0) {
		first, end = fs.groupFirst(g), fs.groupEnd(g)
	}
	if blk < first || blk >= end || n > end-blk {
		return extErr(off, "group %d %s at block %d (%d blocks) is outside blocks [%d, %d)", g, what, blk, n, first, end)
	}
	sbBlk := fs.superBlock()
	if gdtEnd := sbBlk + 1 + fs.oldDescBlocks(); blk < gdtEnd && blk+n > sbBlk {
		return extErr(off, "group %d %s at block %d overlaps the superblock or descriptors (blocks [%d, %d))", g, what, blk, sbBlk, gdtEnd)
	}
	return nil
}

// groupClusters returns the number of clusters of group g.
func (fs *extFS) groupClusters(g uint64) uint64 {
	return extCeilDiv(fs.groupEnd(g)-fs.groupFirst(g), fs.clusterRatio)
}

// descCsum returns the checksum of descriptor d of group g: the low 16 bits
// of a crc32c with metadata_csum, a extCRC16 with gdt_csum.
func (fs *extFS) descCsum(g uint64, d []byte) uint16 {
	var le [4]byte
	binary.LittleEndian.PutUint32(le[:], uint32(g))
	if fs.has(0, 0, extROCompatMetadataCsum) {
		c := extCRC32c(fs.csumSeed, le[:])
		c = extCRC32c(c, d[:extGDChecksum])
		c = extCRC32c(c, []byte{0, 0})
		c = extCRC32c(c, d[extGDChecksum+2:])
		return uint16(c)
	}
	c := extCRC16(0xFFFF, fs.sb[extSBUUID:extSBUUID+16])
	c = extCRC16(c, le[:])
	c = extCRC16(c, d[:extGDChecksum])
	return extCRC16(c, d[extGDChecksum+2:])
}

// metadata returns, sorted and merged, the block ranges that hold group
// metadata: superblock copies, descriptors, reserved GDT blocks, bitmaps,
// inode tables and the MMP block. They are never reported free, whatever
// the bitmaps say.
func (fs *extFS) metadata(groups []extGroup) []extExtent {
	ext := make([]extExtent, 0, 4*len(groups)+1)
	for g, gd := range groups {
		if o := fs.groupOverhead(uint64(g)); o.end > o.start {
			ext = append(ext, o)
		}
		ext = append(ext,
			extExtent{gd.blockBitmap, gd.blockBitmap + 1},
			extExtent{gd.inodeBitmap, gd.inodeBitmap + 1},
			extExtent{gd.inodeTable, gd.inodeTable + fs.itablePerGroup})
	}
	if fs.has(0, extIncompatMMP, 0) {
		if b := binary.LittleEndian.Uint64(fs.sb[extSBMMPBlock:]); b < fs.blocksCount {
			ext = append(ext, extExtent{b, b + 1})
		}
	}
	slices.SortFunc(ext, func(a, b extExtent) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	merged := ext[:0]
	for _, e := range ext {
		if n := len(merged); n > 0 && e.start <= merged[n-1].end {
			merged[n-1].end = max(merged[n-1].end, e.end)
			continue
		}
		merged = append(merged, e)
	}
	return merged
}

// freeRanges reads each group's block bitmap, one block at a time, marks
// the metadata in it, and returns the byte ranges of the clusters left free.
func (fs *extFS) freeRanges(groups []extGroup, meta []extExtent) ([]Range, error) {
	uninitOK := fs.has(0, 0, extROCompatGDTCsum|extROCompatMetadataCsum)
	bitmap := make([]byte, fs.blockSize)
	var free []Range
	mi := 0
	for g, gd := range groups {
		first, end := fs.groupFirst(uint64(g)), fs.groupEnd(uint64(g))
		if uninitOK && gd.flags&extBGBlockUninit != 0 {
			clear(bitmap)
		} else if err := fs.readBitmap(uint64(g), gd, bitmap); err != nil {
			return nil, err
		}
		for mi < len(meta) && meta[mi].end <= first {
			mi++
		}
		for _, m := range meta[mi:] {
			if m.start >= end {
				break
			}
			s, e := max(m.start, first), min(m.end, end)
			extSetBits(bitmap, (s-first)/fs.clusterRatio, extCeilDiv(e-first, fs.clusterRatio))
		}
		n := fs.groupClusters(uint64(g))
		for i := uint64(0); ; {
			i = extNextBit(bitmap, i, n, false)
			if i >= n {
				break
			}
			j := extNextBit(bitmap, i, n, true)
			s := first + i*fs.clusterRatio
			e := min(first+j*fs.clusterRatio, end)
			free = extAppendRange(free, Range{Off: int64(s * fs.blockSize), Len: int64((e - s) * fs.blockSize)})
			i = j
		}
	}
	return free, nil
}

// readBitmap reads the block bitmap of group g into p and verifies its
// checksum when metadata_csum is set.
func (fs *extFS) readBitmap(g uint64, gd extGroup, p []byte) error {
	off := int64(gd.blockBitmap * fs.blockSize)
	if err := extReadAt(fs.r, p, off); err != nil {
		return err
	}
	if !fs.has(0, 0, extROCompatMetadataCsum) {
		return nil
	}
	got := extCRC32c(fs.csumSeed, p[:fs.clustersPerGroup/8])
	if fs.descSize < extGDBlockBitmapCsumHi+2 {
		got &= 0xFFFF
	}
	if got != gd.bitmapCsum {
		return extErr(off, "group %d block bitmap checksum is %#08x, computed %#08x", g, gd.bitmapCsum, got)
	}
	return nil
}

// extAppendRange appends r to rs, merging it with the last range if they touch.
func extAppendRange(rs []Range, r Range) []Range {
	if n := len(rs); n > 0 && rs[n-1].End() == r.Off {
		rs[n-1].Len += r.Len
		return rs
	}
	return append(rs, r)
}

// extSetBits sets bits [from, to) of the little-endian bitmap p.
func extSetBits(p []byte, from, to uint64) {
	for i := from; i < to; i++ {
		p[i/8] |= 1 << (i % 8)
	}
}

// extNextBit returns the index of the first bit at or after i, and before n,
// that equals set, or n if there is none.
func extNextBit(p []byte, i, n uint64, set bool) uint64 {
	skip := byte(0xFF) // a byte with no bit equal to set
	if set {
		skip = 0
	}
	for i < n {
		if i%8 == 0 && p[i/8] == skip {
			i += 8
			continue
		}
		if (p[i/8]>>(i%8)&1 == 1) == set {
			return i
		}
		i++
	}
	return n
}

// staleReason says why the bitmaps on disk may lag behind the file system,
// or returns "" when they are current. They lag when the journal holds
// transactions not yet replayed (needs_recovery with a non-empty log; a
// frozen file system keeps needs_recovery but empties its log), and when a
// file system without a journal is mounted or was not cleanly unmounted.
func (fs *extFS) staleReason(groups []extGroup) (string, error) {
	if fs.incompat&extIncompatRecover != 0 {
		return fs.journalStale(groups)
	}
	if st := binary.LittleEndian.Uint16(fs.sb[extSBState:]); st&extStateValid == 0 {
		return fmt.Sprintf("the file system is mounted or was not cleanly unmounted (state %#x)", st), nil
	}
	return "", nil
}

// journalStale reads the superblock of the internal journal of a file
// system flagged needs_recovery and returns "" when its log is empty
// (s_start is 0), or else why the bitmaps may be stale.
func (fs *extFS) journalStale(groups []extGroup) (string, error) {
	inum := uint64(binary.LittleEndian.Uint32(fs.sb[extSBJournalInum:]))
	if !fs.has(extCompatHasJournal, 0, 0) || inum == 0 {
		return "the external journal needs recovery", nil
	}
	g, idx := (inum-1)/fs.inodesPerGroup, (inum-1)%fs.inodesPerGroup
	if g >= uint64(len(groups)) {
		return fmt.Sprintf("the journal needs recovery but its inode %d does not exist", inum), nil
	}
	inode := make([]byte, 128)
	if err := extReadAt(fs.r, inode, int64(groups[g].inodeTable*fs.blockSize+idx*fs.inodeSize)); err != nil {
		return "", err
	}
	blk, err := fs.firstFileBlock(inode)
	if err != nil {
		return "", err
	}
	if blk == 0 || blk < fs.firstDataBlock || blk >= fs.blocksCount {
		return "the journal needs recovery but its superblock cannot be found", nil
	}
	jsb := make([]byte, 1024)
	if err := extReadAt(fs.r, jsb, int64(blk*fs.blockSize)); err != nil {
		return "", err
	}
	const jbdMagic = 0xC03B3998
	if binary.BigEndian.Uint32(jsb) != jbdMagic {
		return fmt.Sprintf("the journal needs recovery but block %d holds no journal superblock", blk), nil
	}
	if t := binary.BigEndian.Uint32(jsb[4:]); t != 3 && t != 4 {
		return fmt.Sprintf("the journal needs recovery but its superblock at block %d has type %d", blk, t), nil
	}
	if start := binary.BigEndian.Uint32(jsb[0x1C:]); start != 0 {
		return fmt.Sprintf("the journal holds transactions to replay (its log starts at journal block %d)", start), nil
	}
	return "", nil
}

// firstFileBlock returns the physical block of logical block 0 of inode, by
// its extent tree or its block map, or 0, which can never be a journal
// block, when the extent tree is damaged.
func (fs *extFS) firstFileBlock(inode []byte) (uint64, error) {
	const extentsFlag = 0x80000
	iblock := inode[0x28 : 0x28+60]
	if binary.LittleEndian.Uint32(inode[0x20:])&extentsFlag == 0 {
		return uint64(binary.LittleEndian.Uint32(iblock)), nil
	}
	node := iblock
	buf := make([]byte, fs.blockSize)
	for depth := -1; ; {
		const extentMagic = 0xF30A
		if binary.LittleEndian.Uint16(node) != extentMagic || binary.LittleEndian.Uint16(node[2:]) == 0 {
			return 0, nil
		}
		d := int(binary.LittleEndian.Uint16(node[6:]))
		if d > 5 || (depth >= 0 && d != depth-1) {
			return 0, nil
		}
		depth = d
		e := node[12:24] // the first entry covers logical block 0
		if binary.LittleEndian.Uint32(e) != 0 {
			return 0, nil
		}
		if depth == 0 {
			return uint64(binary.LittleEndian.Uint16(e[6:]))<<32 | uint64(binary.LittleEndian.Uint32(e[8:])), nil
		}
		child := uint64(binary.LittleEndian.Uint16(e[8:]))<<32 | uint64(binary.LittleEndian.Uint32(e[4:]))
		if child < fs.firstDataBlock || child >= fs.blocksCount {
			return 0, nil
		}
		if err := extReadAt(fs.r, buf, int64(child*fs.blockSize)); err != nil {
			return 0, err
		}
		node = buf
	}
}

// extCeilDiv returns a/b rounded up.
func extCeilDiv(a, b uint64) uint64 { return a/b + min(a%b, 1) }

var extCastagnoli = crc32.MakeTable(crc32.Castagnoli)

// extCRC32c continues the crc32c state c over p, without the pre- and
// post-inversion of hash/crc32: the form ext4 checksums use.
func extCRC32c(c uint32, p []byte) uint32 {
	return ^crc32.Update(^c, extCastagnoli, p)
}

// extCRC16Table is the table of the reflected CRC-16 (polynomial 0x8005) that
// gdt_csum uses.
var extCRC16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// extCRC16 continues the CRC-16 c over p.
func extCRC16(c uint16, p []byte) uint16 {
	for _, b := range p {
		c = c>>8 ^ extCRC16Table[byte(c)^b]
	}
	return c
}
