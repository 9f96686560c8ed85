package vhd

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Format is an image file format.
type Format int

const (
	FormatVHD  Format = iota + 1 // Virtual Hard Disk, version 1.0
	FormatVHDX                   // Virtual Hard Disk v2
	// FormatRaw is a plain disk image: byte for byte the disk. Only
	// Convert reads and writes it; Open never returns it.
	FormatRaw
)

func (f Format) String() string {
	switch f {
	case FormatVHD:
		return "VHD"
	case FormatVHDX:
		return "VHDX"
	case FormatRaw:
		return "raw"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// Type is how an image stores its data.
type Type int

const (
	// Fixed images hold every byte of the disk, followed by a footer.
	Fixed Type = iota + 1
	// Dynamic images hold only the blocks that were written.
	Dynamic
	// Differencing images hold the blocks written since they were made from
	// a parent image; every other sector reads through to the parent.
	Differencing
)

func (t Type) String() string {
	switch t {
	case Fixed:
		return "fixed"
	case Dynamic:
		return "dynamic"
	case Differencing:
		return "differencing"
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// An Extent is a range of a disk's bytes.
type Extent struct {
	Offset int64
	Length int64
}

// End returns the offset just past the extent.
func (e Extent) End() int64 { return e.Offset + e.Length }

// Info describes an image's metadata.
type Info struct {
	Format Format
	Type   Type
	Size   int64 // virtual size in bytes: the footer's current size

	UUID           UUID      // VHD: footer unique ID; VHDX: virtual disk ID (page 83)
	Created        time.Time // VHD footer time stamp, to the second
	CreatorApp     string    // VHD: "vpc ", "win ", "qemu", "qem2", "vmmk", ...; VHDX: the creator string
	CreatorVersion uint32    // major<<16 | minor
	CreatorOS      string    // "Wi2k", "Mac "
	OriginalSize   int64     // size when the image was made
	Geometry       Geometry  // CHS geometry recorded in the footer
	SavedState     bool

	BlockSize       int64 // bytes per block; 0 for fixed VHD images
	MaxTableEntries int   // BAT entries; 0 for fixed VHD images

	// Sector sizes the guest sees; VHDX images may use 4096. VHD is 512.
	LogicalSectorSize  int64
	PhysicalSectorSize int64

	// Set for differencing images only. ParentUUID is what the child
	// records of its parent: the parent's UUID for VHD, its data write GUID
	// (parent_linkage) for VHDX.
	ParentUUID     UUID
	ParentTime     time.Time // parent time stamp recorded in the child
	ParentName     string    // parent name recorded in the child
	ParentLocators []Locator
}

// A Locator is one recorded location of a differencing image's parent.
type Locator struct {
	Platform string // "W2ru" (relative), "W2ku" (absolute), "MacX" (file URL), ...
	Path     string // as stored, decoded to a string
}

// A File is an image file as OpenOptions.OpenParent returns it. *os.File
// satisfies it.
type File interface {
	io.ReaderAt
	io.Closer
	Stat() (fs.FileInfo, error)
}

// OpenOptions control how OpenFile opens an image.
type OpenOptions struct {
	// OpenParent opens the file of a differencing image's parent, read-only.
	// It is called with each candidate path taken from the child's parent
	// locators (relative ones joined to the child's directory), in order,
	// until one yields the parent the child names. Nil means os.Open.
	OpenParent func(name string) (File, error)

	// IgnoreParentTimestamp accepts a parent whose time stamp matches neither
	// the one recorded in the child nor its file's modification time. The
	// parent's UUID must match in any case.
	IgnoreParentTimestamp bool

	// IgnoreParentLinkage accepts a VHDX parent whose data write GUID is not
	// the one the child records: a parent written since the child was made.
	// Reading such a child shows the child's blocks over the parent as it is
	// now. It is meant for recovery, as after an interrupted Merge.
	IgnoreParentLinkage bool
}

// storage is the byte store under an image.
type storage interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Sync() error
}

// readOnly adapts an io.ReaderAt to storage.
type readOnly struct{ io.ReaderAt }

func (readOnly) WriteAt([]byte, int64) (int, error) { return 0, ErrReadOnly }
func (readOnly) Truncate(int64) error               { return ErrReadOnly }
func (readOnly) Sync() error                        { return nil }

// osFile is storage on an *os.File, synced with fdatasync where available.
type osFile struct{ *os.File }

func (f osFile) Sync() error { return datasync(f.File) }

// A Disk is an open disk image. ReadAt and the accessors are safe for
// concurrent use; WriteAt calls are serialized internally.
type Disk struct {
	mu       sync.RWMutex
	name     string
	st       storage
	closer   io.Closer // closed by Close; nil for NewDisk
	writable bool
	closed   bool

	size   int64
	info   Info
	parent *Disk

	mtime  uint32   // file modification time as a VHD time stamp, for parents
	footer []byte   // marshaled footer, rewritten after each new block
	dyn    *dynamic // nil for fixed VHD images
	vhdx   *vhdxImage

	linkID     UUID // what a child records to name this disk as its parent
	parentWant UUID // what this differencing disk expects of its parent

	notes []Problem // damage that opening worked around, for Check
}

// note records damage that opening worked around.
func (d *Disk) note(off int64, what string) {
	d.notes = append(d.notes, Problem{Image: d.name, Offset: off, What: what, Repairable: true})
}

// Open opens the named image file for reading. Close closes the file and
// the files of its parents.
func Open(name string) (*Disk, error) {
	return OpenFile(name, os.O_RDONLY, nil)
}

// OpenFile opens the named image file for reading (os.O_RDONLY) or for
// reading and writing (os.O_RDWR). Parents of a differencing image are
// always opened read-only. Flags that create or truncate are refused: use
// Create. A nil opts means the defaults.
//
// OpenFile on a writable image whose trailing footer was lost in a crash
// (the copy at the start of the file is intact) rewrites the footer.
func OpenFile(name string, flag int, opts *OpenOptions) (*Disk, error) {
	if flag&(os.O_CREATE|os.O_TRUNC|os.O_APPEND|os.O_EXCL) != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("vhd: OpenFile does not create or truncate images; use Create")}
	}
	writable := flag&(os.O_WRONLY|os.O_RDWR) != 0
	oflag := os.O_RDONLY
	if writable {
		oflag = os.O_RDWR
	}
	f, err := os.OpenFile(name, oflag, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	var st storage = osFile{f}
	if !writable {
		st = readOnly{f}
	}
	d, err := newDisk(st, fi.Size(), name, writable, opts, nil, nil)
	if err != nil {
		f.Close()
		return nil, err
	}
	d.closer = f
	return d, nil
}

// NewDisk reads an image of size bytes from r. The caller keeps r; Close
// does not close it. The parent of a differencing image is looked for with
// os.Open, relative locators taken relative to the current directory; use
// NewDiskOptions or OpenFile to control that.
func NewDisk(r io.ReaderAt, size int64) (*Disk, error) {
	return newDisk(readOnly{r}, size, "", false, nil, nil, nil)
}

// NewDiskOptions is NewDisk with options: opts.OpenParent decides how,
// and whether, the parent of a differencing image is opened (relative
// locators are passed as they are recorded, having no directory to be
// joined to). An image from an untrusted place should be read with an
// OpenParent that stays within that place, or refuses.
func NewDiskOptions(r io.ReaderAt, size int64, opts *OpenOptions) (*Disk, error) {
	return newDisk(readOnly{r}, size, "", false, opts, nil, nil)
}

// newDisk decodes the image in st. seen holds the UUIDs of the children
// already open in this chain, to detect loops. A non-nil want is the UUID a
// child expects of its parent: any other image is refused before its own
// parents are looked for.
func newDisk(st storage, fileSize int64, name string, writable bool, opts *OpenOptions, seen map[UUID]bool, want *UUID) (*Disk, error) {
	if opts == nil {
		opts = &OpenOptions{}
	}
	if fileSize < footerSize {
		return nil, formatErr(0, "footer", detail(ErrFormat, "file of %d bytes is too short", fileSize))
	}
	var sig [8]byte
	if readFull(st, sig[:], 0) == nil && string(sig[:]) == "vhdxfile" {
		d := &Disk{name: name, st: st, writable: writable}
		d.info.LogicalSectorSize = SectorSize
		if err := d.openVHDX(fileSize); err != nil {
			return nil, err
		}
		if want != nil && d.linkID != *want && !opts.IgnoreParentLinkage {
			return nil, fmt.Errorf("%w: its data write GUID is %s (the parent was written since the child was made; OpenOptions.IgnoreParentLinkage accepts it)", ErrParent, guidString(d.linkID))
		}
		if d.info.Type == Differencing {
			if err := d.openChain(opts, seen); err != nil {
				return nil, err
			}
		}
		return d, nil
	}
	foot, tailOK, err := readFooter(st, fileSize)
	if err != nil {
		return nil, err
	}
	if want != nil && foot.UUID != *want {
		return nil, fmt.Errorf("%w: its UUID is %s", ErrParent, foot.UUID)
	}
	d := &Disk{name: name, st: st, writable: writable, footer: foot.marshal(), linkID: foot.UUID}
	d.size = int64(foot.CurrentSize) &^ (SectorSize - 1)
	d.info = Info{
		Format:         FormatVHD,
		Size:           d.size,
		UUID:           foot.UUID,
		Created:        fromVHDTime(foot.Timestamp),
		CreatorApp:     string(foot.CreatorApp[:]),
		CreatorVersion: foot.CreatorVersion,
		CreatorOS:      string(foot.CreatorOS[:]),
		OriginalSize:   int64(foot.OriginalSize),
		Geometry:       foot.Geometry,
		SavedState:     foot.SavedState != 0,

		LogicalSectorSize:  SectorSize,
		PhysicalSectorSize: SectorSize,
	}
	switch foot.DiskType {
	case diskTypeFixed:
		d.info.Type = Fixed
		if fileSize-footerSize < d.size {
			return nil, formatErr(fileSize-footerSize, "footer", detail(ErrFormat, "fixed image of %d bytes holds less than its size %d", fileSize-footerSize, d.size))
		}
		return d, nil
	case diskTypeDynamic:
		d.info.Type = Dynamic
	default:
		d.info.Type = Differencing
	}
	if !tailOK && foot.DiskType != diskTypeFixed {
		d.note(fileSize-footerSize, "the footer at the end of the file is missing or damaged; the copy at offset 0 stands in")
	} else if foot.DiskType != diskTypeFixed {
		var head [footerSize]byte
		if readFull(st, head[:], 0) == nil && !bytes.Equal(head[:], d.footer) {
			d.note(0, "the footer copy at offset 0 is damaged or differs from the footer")
		}
	}
	if err := d.openDynamic(foot, fileSize, tailOK); err != nil {
		return nil, err
	}
	if d.info.Type == Differencing {
		d.parentWant = d.dyn.header.ParentUUID
		if err := d.openChain(opts, seen); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// openChain opens the parent of a differencing disk, noting the disk in
// seen to catch loops.
func (d *Disk) openChain(opts *OpenOptions, seen map[UUID]bool) error {
	if seen == nil {
		seen = make(map[UUID]bool)
	}
	seen[d.linkID] = true
	return d.openParent(opts, seen)
}

// readFooter finds the footer of an image: the copy at offset 0 of a
// dynamic or differencing image, or the footer in the last sector. tailOK
// reports whether the last sector holds a valid footer for the same image.
func readFooter(st storage, fileSize int64) (f *footer, tailOK bool, err error) {
	var head, tail [footerSize]byte
	tailOff := fileSize - footerSize
	if err := readFull(st, tail[:], tailOff); err != nil {
		return nil, false, err
	}
	tf, terr := parseFooter(tail[:], tailOff)
	if err := readFull(st, head[:], 0); err != nil {
		return nil, false, err
	}
	hf, herr := parseFooter(head[:], 0)
	if herr == nil && hf.DiskType == diskTypeFixed {
		herr = formatErr(0, "footer copy", detail(ErrFormat, "fixed disk type in the copy at offset 0"))
	}
	if terr == nil && tf.DiskType == diskTypeFixed && (int64(tf.CurrentSize) == tailOff || herr != nil && int64(tf.CurrentSize) < tailOff) {
		// A fixed image's only footer. Its first sector is disk data, which
		// may look like anything; and a dynamic image cut short by a crash
		// may end in guest data that looks like a fixed footer, so with a
		// valid dynamic copy at offset 0 only an exact fit counts.
		return tf, true, nil
	}
	switch {
	case herr == nil:
		// The copy at the start is authoritative: the trailing footer may
		// have been overwritten by a block that was being added.
		return hf, terr == nil && tf.UUID == hf.UUID, nil
	case terr == nil:
		return tf, true, nil
	}
	// Neither is usable. A damaged footer says more than a missing one.
	for _, e := range []error{terr, herr} {
		var fe *FormatError
		if errors.As(e, &fe) && fe.Err != ErrFormat {
			return nil, false, e
		}
	}
	return nil, false, formatErr(tailOff, "footer", detail(ErrFormat, "no VHD footer at the start or the end of the file"))
}

// readFull reads exactly len(p) bytes at off, or fails with an error that
// names the range.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("vhd: read %d bytes at %#x: %w", len(p), off, err)
}

func writeFull(w io.WriterAt, p []byte, off int64) error {
	if _, err := w.WriteAt(p, off); err != nil {
		return fmt.Errorf("vhd: write %d bytes at %#x: %w", len(p), off, err)
	}
	return nil
}

// Size returns the virtual size of the disk in bytes.
func (d *Disk) Size() int64 { return d.size }

// Format returns the image's file format.
func (d *Disk) Format() Format { return d.info.Format }

// Type returns whether the image is fixed, dynamic or differencing.
func (d *Disk) Type() Type { return d.info.Type }

// Parent returns the parent of a differencing disk, or nil. The parent is
// open read-only and is closed by the child's Close.
func (d *Disk) Parent() *Disk { return d.parent }

// Name returns the file name the disk was opened with, or "" for NewDisk.
func (d *Disk) Name() string { return d.name }

// Info returns the image's metadata.
func (d *Disk) Info() Info {
	i := d.info
	i.ParentLocators = slices.Clone(i.ParentLocators)
	return i
}

var errNegativeOffset = errors.New("vhd: negative offset")

// ReadAt reads len(p) bytes of the disk's content at offset off. Sectors
// never written read as zeros, or from the parent of a differencing disk.
// A read that reaches the end of the disk returns the bytes before the end
// and io.EOF. ReadAt is safe for concurrent use, also with WriteAt.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errNegativeOffset
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return 0, ErrClosed
	}
	if off >= d.size {
		return 0, io.EOF
	}
	n := len(p)
	var eof error
	if int64(n) >= d.size-off {
		n = int(d.size - off)
		eof = io.EOF
	}
	if err := d.read(p[:n], off); err != nil {
		return 0, err
	}
	return n, eof
}

// read fills p, which lies within the disk, from the image. The caller holds
// d.mu.
func (d *Disk) read(p []byte, off int64) error {
	switch {
	case d.vhdx != nil:
		return d.readVHDX(p, off)
	case d.dyn != nil:
		return d.readBlocks(p, off)
	}
	return readFull(d.st, p, off)
}

// WriteAt writes len(p) bytes at offset off. Bytes past the end of the disk
// are not written and WriteAt returns ErrOutOfRange with the count of bytes
// that were. A write to a dynamic disk that fills a never-written block with
// zeros allocates nothing. Data reaches stable storage after Sync.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errNegativeOffset
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, ErrClosed
	}
	if !d.writable {
		return 0, ErrReadOnly
	}
	n := len(p)
	var short error
	if int64(n) > d.size-off {
		n = int(max(0, d.size-off))
		short = detail(ErrOutOfRange, "write of %d bytes at %d past the end of a %d-byte disk", len(p), off, d.size)
	}
	if n == 0 {
		return 0, short
	}
	var done int
	var err error
	switch {
	case d.vhdx != nil:
		done, err = d.writeVHDX(p[:n], off)
	case d.dyn != nil:
		done, err = d.writeBlocks(p[:n], off)
	default:
		done, err = d.st.WriteAt(p[:n], off)
		if err != nil {
			err = fmt.Errorf("vhd: write %d bytes at %#x: %w", n, off, err)
		}
	}
	if err != nil {
		return done, err
	}
	return n, short
}

// Sync commits written data and metadata to stable storage.
func (d *Disk) Sync() error {
	// A VHDX flush changes the pending metadata pages that reads consult.
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if !d.writable {
		return nil
	}
	if d.vhdx != nil {
		return d.flushVHDX()
	}
	return d.st.Sync()
}

// Close syncs a writable disk and closes the files of the disk and its
// parents. Close on a closed disk returns ErrClosed.
func (d *Disk) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.closed = true
	var errs []error
	switch {
	case d.writable && d.vhdx != nil:
		errs = append(errs, d.closeVHDX())
	case d.writable:
		errs = append(errs, d.st.Sync())
	}
	if d.parent != nil {
		errs = append(errs, d.parent.Close())
	}
	if d.closer != nil {
		errs = append(errs, d.closer.Close())
	}
	return errors.Join(errs...)
}

// Extents returns the ranges of the disk that hold data, in order and
// without overlaps: allocated blocks of a dynamic disk (and, for a
// differencing disk, of its parents), and for a fixed image in a sparse
// file, the ranges the file system stores. Reading outside them yields
// zeros. The ranges are taken when Extents is called.
func (d *Disk) Extents() iter.Seq[Extent] {
	d.mu.RLock()
	list := d.extents()
	d.mu.RUnlock()
	return slices.Values(list)
}

// hostFile returns the file under the image, when it is one.
func (d *Disk) hostFile() *os.File {
	switch st := d.st.(type) {
	case osFile:
		return st.File
	case readOnly:
		f, _ := st.ReaderAt.(*os.File)
		return f
	case *overlay:
		if len(st.pages) == 0 {
			if f, ok := st.storage.(osFile); ok {
				return f.File
			}
		}
	}
	return nil
}

// refine narrows the allocated blocks, given by their disk range and file
// offset, to the ranges the host file system stores: blocks hold holes
// where nothing was ever written, and those read as zeros.
func (d *Disk) refine(blocks []blockRange) []Extent {
	f := d.hostFile()
	var out []Extent
	add := func(e Extent) {
		if n := len(out); n > 0 && out[n-1].End() == e.Offset {
			out[n-1].Length += e.Length
		} else {
			out = append(out, e)
		}
	}
	var runs []Extent // the file's data, found in one pass: asking per
	// block would make each SEEK_HOLE scan on through every block after it
	if f != nil {
		if fi, err := f.Stat(); err == nil {
			runs = fileExtents(f, fi.Size())
		} else {
			f = nil
		}
	}
	for _, b := range blocks {
		if f == nil {
			add(b.disk)
			continue
		}
		from, to := b.file, b.file+b.disk.Length
		i, _ := slices.BinarySearchFunc(runs, from, func(r Extent, off int64) int { return cmp.Compare(r.End(), off+1) })
		for ; i < len(runs) && runs[i].Offset < to; i++ {
			lo, hi := max(runs[i].Offset, from), min(runs[i].End(), to)
			if lo < hi {
				add(Extent{b.disk.Offset + lo - from, hi - lo})
			}
		}
	}
	return out
}

// A blockRange is an allocated block: its range of the disk and where its
// data starts in the file.
type blockRange struct {
	disk Extent
	file int64
}

func (d *Disk) extents() []Extent {
	var own []Extent
	switch {
	case d.closed:
		return nil
	case d.vhdx != nil:
		own = d.refine(d.vhdx.blocks(d.size))
	case d.dyn != nil:
		own = d.refine(d.dyn.blocks(d.size))
	case d.hostFile() != nil:
		return fileExtents(d.hostFile(), d.size)
	case d.size == 0:
		return nil
	default:
		return []Extent{{0, d.size}}
	}
	if d.parent == nil {
		return own
	}
	d.parent.mu.RLock()
	pe := d.parent.extents()
	d.parent.mu.RUnlock()
	return unionExtents(own, pe, d.size)
}

// unionExtents merges two sorted extent lists, clipped to size.
func unionExtents(a, b []Extent, size int64) []Extent {
	all := append(slices.Clone(a), b...)
	slices.SortFunc(all, func(x, y Extent) int { return int(min(max(x.Offset-y.Offset, -1), 1)) })
	var out []Extent
	for _, e := range all {
		if e.Offset >= size {
			break
		}
		e.Length = min(e.Length, size-e.Offset)
		if n := len(out); n > 0 && e.Offset <= out[n-1].End() {
			out[n-1].Length = max(out[n-1].End(), e.End()) - out[n-1].Offset
			continue
		}
		out = append(out, e)
	}
	return out
}

// String returns a short description, as "dynamic VHD 10 GiB child.vhd".
func (d *Disk) String() string {
	name := d.name
	if name == "" {
		name = "(reader)"
	}
	return fmt.Sprintf("%s %s %d bytes %s", d.info.Type, d.info.Format, d.size, filepath.Base(strings.TrimSpace(name)))
}
