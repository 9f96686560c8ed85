package vhd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf16"
)

// CreateOptions control the image Create makes. The zero value means a
// dynamic image in the format the file name's extension names, with the
// default block size.
type CreateOptions struct {
	// Format of the image. Zero means the one the file name's extension
	// names: VHDX for ".vhdx", VHD otherwise.
	Format Format

	// Type of the image: Fixed or Dynamic. Zero means Dynamic, or
	// Differencing when Parent is set.
	Type Type

	// BlockSize of a dynamic or differencing image in bytes, a power of two
	// from 512 B to 256 MiB. Zero means DefaultBlockSize (2 MiB).
	BlockSize int64

	// Parent is the path of the image a differencing image is made from.
	// The child records it as relative (W2ru), absolute (W2ku) and file URL
	// (MacX) locators. A size of 0 passed to Create means the parent's size.
	Parent string

	// ParentOptions open the parent chain; nil means the defaults.
	ParentOptions *OpenOptions

	// RoundToGeometry rounds the size up to the next size a CHS geometry
	// describes exactly, as qemu-img without force_size and Virtual PC do,
	// so that readers that size a disk by its geometry see all of it. See
	// the package documentation on sizes.
	RoundToGeometry bool

	// UUID of the new image (for VHDX, its virtual disk ID, page 83 data).
	// Zero means a random one.
	UUID UUID

	// LogicalSectorSize and PhysicalSectorSize of a VHDX image: 512 or 4096.
	// Zero means 512 logical and 4096 physical (512e), as Hyper-V makes
	// them; 4096 logical is a 4Kn disk. VHD images have 512-byte sectors.
	LogicalSectorSize  int64
	PhysicalSectorSize int64
}

// createVHDX makes a VHDX image; the options are checked and complete.
func createVHDX(name string, size int64, o *CreateOptions, parent *Disk) (*Disk, error) {
	size = alignUp(size, o.LogicalSectorSize)
	if size <= 0 || size > vhdxMaxSize {
		return nil, fmt.Errorf("create %s: %w", name, detail(ErrOutOfRange, "size %d is not between 1 byte and 64 TiB", size))
	}
	if parent != nil && o.LogicalSectorSize != parent.info.LogicalSectorSize {
		o.LogicalSectorSize = parent.info.LogicalSectorSize
	}
	return createWith(name, o.ParentOptions, func(f *os.File) error { return writeNewVHDX(f, size, o, parent) })
}

// createWith makes the file name (which must not exist), lays out an image
// in it with write, syncs it and opens it for writing. On any error it
// removes the file.
func createWith(name string, oo *OpenOptions, write func(*os.File) error) (*Disk, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	err = write(f)
	if err == nil {
		err = datasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	d, err := OpenFile(name, os.O_RDWR, oo)
	if err != nil {
		os.Remove(name)
		return nil, fmt.Errorf("create %s: reopen: %w", name, err)
	}
	return d, nil
}

// creator fields of images this package writes.
var (
	creatorApp     = [4]byte{'v', 'm', 'm', 'k'}
	creatorOS      = [4]byte{'W', 'i', '2', 'k'}
	creatorVersion = uint32(0x00010000)
)

// Create makes a new image of size bytes and returns it open for reading and
// writing; nil opts means a dynamic image in the format named by the file's
// extension with the default block size. The size is rounded up to a whole
// sector (and to a CHS geometry with RoundToGeometry). Create fails with an
// error satisfying errors.Is(err, fs.ErrExist) if the file exists; on any
// error it leaves no file behind. The image is complete and synced when
// Create returns.
func Create(name string, size int64, opts *CreateOptions) (*Disk, error) {
	var o CreateOptions
	if opts != nil {
		o = *opts
	}
	if o.Format == 0 {
		o.Format = FormatVHD
		if strings.EqualFold(filepath.Ext(name), ".vhdx") {
			o.Format = FormatVHDX
		}
	}
	if o.Format != FormatVHD && o.Format != FormatVHDX {
		return nil, fmt.Errorf("create %s: %w", name, detail(ErrUnsupported, "creating %s images", o.Format))
	}
	if o.Parent != "" {
		o.Type = Differencing
	} else if o.Type == 0 {
		o.Type = Dynamic
	}
	if o.BlockSize == 0 {
		switch {
		case o.Format == FormatVHD:
			o.BlockSize = DefaultBlockSize
		case o.Type == Differencing:
			o.BlockSize = DefaultVHDXDiffBlockSize
		default:
			o.BlockSize = DefaultVHDXBlockSize
		}
	}
	if o.Format == FormatVHDX {
		if o.LogicalSectorSize == 0 {
			o.LogicalSectorSize = 512
		}
		if o.PhysicalSectorSize == 0 {
			o.PhysicalSectorSize = 4096
		}
		if (o.LogicalSectorSize != 512 && o.LogicalSectorSize != 4096) || (o.PhysicalSectorSize != 512 && o.PhysicalSectorSize != 4096) {
			return nil, fmt.Errorf("create %s: sector sizes %d/%d: VHDX sectors are 512 or 4096 bytes", name, o.LogicalSectorSize, o.PhysicalSectorSize)
		}
		if o.BlockSize < vhdxMB || o.BlockSize > maxBlockSize || bits.OnesCount64(uint64(o.BlockSize)) != 1 {
			return nil, fmt.Errorf("create %s: block size %d is not a power of two from 1 MiB to 256 MiB", name, o.BlockSize)
		}
	} else if o.LogicalSectorSize > SectorSize || o.PhysicalSectorSize > SectorSize {
		return nil, fmt.Errorf("create %s: VHD images have 512-byte sectors", name)
	}
	if o.Type == Differencing && o.Parent == "" {
		return nil, fmt.Errorf("create %s: a differencing image needs CreateOptions.Parent", name)
	}
	if o.Type != Fixed && (o.BlockSize < minBlockSize || o.BlockSize > maxBlockSize || bits.OnesCount64(uint64(o.BlockSize)) != 1) {
		return nil, fmt.Errorf("create %s: block size %d is not a power of two from %d to %d", name, o.BlockSize, minBlockSize, maxBlockSize)
	}
	if o.UUID.IsZero() {
		o.UUID = NewUUID()
	}

	var parent *Disk
	if o.Type == Differencing {
		var err error
		if parent, err = OpenFile(o.Parent, os.O_RDONLY, o.ParentOptions); err != nil {
			return nil, fmt.Errorf("create %s: open parent: %w", name, err)
		}
		defer parent.Close()
		if size == 0 {
			size = parent.Size()
		}
		if size < parent.Size() {
			return nil, fmt.Errorf("create %s: size %d is smaller than the parent's %d", name, size, parent.Size())
		}
		if parent.Format() != o.Format {
			return nil, fmt.Errorf("create %s: a %s image needs a %s parent, not %s", name, o.Format, o.Format, parent.Format())
		}
	}
	if o.Format == FormatVHDX {
		return createVHDX(name, size, &o, parent)
	}
	if size <= 0 || size > MaxVHDSize {
		return nil, fmt.Errorf("create %s: %w", name, detail(ErrOutOfRange, "size %d is not between 1 byte and %d bytes (2040 GiB)", size, int64(MaxVHDSize)))
	}
	size, geo := vhdSize(alignUp(size, SectorSize), o.RoundToGeometry)
	if size > MaxVHDSize {
		return nil, fmt.Errorf("create %s: %w", name, detail(ErrOutOfRange, "size %d rounded to a geometry exceeds 2040 GiB", size))
	}

	return createWith(name, o.ParentOptions, func(f *os.File) error { return writeNewImage(f, size, geo, &o, parent) })
}

// vhdSize returns the current size and geometry to record for a disk of
// size bytes (a whole number of sectors).
func vhdSize(size int64, round bool) (int64, Geometry) {
	if round && size/SectorSize < maxCHSSectors {
		// The smallest geometry that covers the size, as qemu-img computes
		// it: try sector counts upward until one is covered.
		for total := size / SectorSize; ; total++ {
			if g := GeometryFor(total * SectorSize); g.Sectors() >= size/SectorSize {
				return g.Size(), g
			}
		}
	}
	if g := GeometryFor(size); g.Size() == size {
		return size, g
	}
	// No geometry describes the size exactly. The maximum geometry tells
	// geometry-sizing readers (qemu, Virtual PC) to use the current size.
	return size, maxGeometry
}

func writeNewImage(f *os.File, size int64, geo Geometry, o *CreateOptions, parent *Disk) error {
	ft := &footer{
		Features:       2, // reserved bit, always set
		Version:        formatVersion,
		DataOffset:     noOffset,
		Timestamp:      toVHDTime(time.Now()),
		CreatorApp:     creatorApp,
		CreatorVersion: creatorVersion,
		CreatorOS:      creatorOS,
		OriginalSize:   uint64(size),
		CurrentSize:    uint64(size),
		Geometry:       geo,
		DiskType:       diskTypeFixed,
		UUID:           o.UUID,
	}
	if o.Type == Fixed {
		if err := f.Truncate(size); err != nil {
			return err
		}
		_, err := f.WriteAt(ft.marshal(), size)
		return err
	}

	ft.DataOffset = footerSize
	ft.DiskType = diskTypeDynamic
	entries := (size + o.BlockSize - 1) / o.BlockSize
	batOff := int64(footerSize + dynHeaderSize)
	batBytes := alignUp(entries*4, SectorSize)
	h := &dynHeader{
		DataOffset:      noOffset,
		TableOffset:     uint64(batOff),
		Version:         formatVersion,
		MaxTableEntries: uint32(entries),
		BlockSize:       uint32(o.BlockSize),
	}
	end := batOff + batBytes
	var locData [][]byte
	if parent != nil {
		ft.DiskType = diskTypeDifferencing
		h.ParentUUID = parent.info.UUID
		h.ParentTimestamp = toVHDTime(parent.info.Created)
		abs, err := filepath.Abs(o.Parent)
		if err != nil {
			return err
		}
		h.ParentName = abs
		locs, err := parentLocators(f.Name(), abs)
		if err != nil {
			return err
		}
		for i, l := range locs {
			space := alignUp(int64(len(l.data)), SectorSize)
			h.Locators[i] = locatorEntry{Code: l.code, DataSpace: uint32(space), DataLength: uint32(len(l.data)), DataOffset: uint64(end)}
			locData = append(locData, l.data)
			end += space
		}
	}

	// One write for everything up to the first block: footer copy, dynamic
	// header, BAT (all unused), locators; then the footer after it.
	buf := make([]byte, end+footerSize)
	fb := ft.marshal()
	copy(buf, fb)
	copy(buf[footerSize:], h.marshal())
	for i := batOff; i < batOff+batBytes; i++ {
		buf[i] = 0xff
	}
	for i, d := range locData {
		copy(buf[h.Locators[i].DataOffset:], d)
	}
	copy(buf[end:], fb)
	_, err := f.WriteAt(buf, 0)
	return err
}

// relativeParent returns the path of the parent at abs relative to the
// directory of the image child, with slashes, starting with "./" or "../".
func relativeParent(child, abs string) (string, error) {
	childAbs, err := filepath.Abs(child)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(filepath.Dir(childAbs), abs)
	if err != nil {
		return "", err
	}
	rel = filepath.ToSlash(rel)
	if !strings.HasPrefix(rel, "../") {
		rel = "./" + rel
	}
	return rel, nil
}

type locatorData struct {
	code uint32
	data []byte
}

// parentLocators encodes where the parent at abs is, as seen from the
// image being created at child.
func parentLocators(child, abs string) ([]locatorData, error) {
	rel, err := relativeParent(child, abs)
	if err != nil {
		return nil, err
	}
	utf16le := func(s string) []byte {
		u := utf16.Encode([]rune(strings.ReplaceAll(s, "/", `\`)))
		b := make([]byte, 2*len(u))
		for i, c := range u {
			binary.LittleEndian.PutUint16(b[2*i:], c)
		}
		return b
	}
	fileURL := (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
	locs := []locatorData{
		{platW2ru, utf16le(rel)},
		{platW2ku, utf16le(filepath.ToSlash(abs))},
		{platMacX, []byte(fileURL)},
	}
	for _, l := range locs {
		if len(l.data) > maxLocatorBytes {
			return nil, errors.New("parent path too long")
		}
	}
	return locs, nil
}
