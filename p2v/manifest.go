package p2v

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/zeebo/xxh3"

	"github.com/vmmkit/vmmkit/vhd"
)

// A Hash is the XXH3-128 hash of one chunk of a disk, big-endian.
type Hash [16]byte

func hashOf(b []byte) Hash { return xxh3.Hash128(b).Bytes() }

// A Manifest records what a capture wrote: the hash of every chunk of the
// disk as the image holds it (unused and all-zero chunks hash as zeros). The
// next incremental capture reads it to find the chunks that changed, without
// reading the previous image.
type Manifest struct {
	ChunkSize int64     // bytes per hashed chunk
	DiskSize  int64     // bytes of the captured disk
	Source    string    // the source's name
	Image     vhd.UUID  // UUID of the image the manifest describes
	Pass      [16]byte  // random ID of the capture that wrote it
	Parent    [16]byte  // for a differencing image: Pass of its parent's manifest then
	Created   time.Time // when that capture finished
	Hashes    []Hash    // one per chunk
}

// ManifestPath returns where the manifest of an image is kept: beside it,
// with ".manifest" appended to its name.
func ManifestPath(image string) string { return image + ".manifest" }

// A ManifestError reports a manifest that cannot be used: unreadable,
// damaged, or not describing the image beside it.
type ManifestError struct {
	Path   string
	Reason string
	Err    error // underlying cause, if any
}

func (e *ManifestError) Error() string {
	s := fmt.Sprintf("p2v: manifest %s: %s", e.Path, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ManifestError) Unwrap() error { return e.Err }

const (
	manifestMagic   = "VMMKP2VM"
	manifestVersion = 1
	manifestHeader  = 8 + 4 + 4 + 8 + 8 + 8 + 16 + 16 + 16 + 8 + 2 // then source name, hashes, check
	maxChunks       = 1 << 28                                      // 256 Mi chunks: 256 TiB at 1 MiB
)

func chunkCount(size, chunk int64) int64 { return (size + chunk - 1) / chunk }

// MarshalBinary encodes the manifest; the last 8 bytes are an XXH3-64 check
// of everything before them.
func (m *Manifest) MarshalBinary() ([]byte, error) {
	name := m.Source
	if len(name) > 4096 {
		name = name[:4096]
	}
	b := make([]byte, 0, manifestHeader+len(name)+16*len(m.Hashes)+8)
	b = append(b, manifestMagic...)
	b = binary.LittleEndian.AppendUint32(b, manifestVersion)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.ChunkSize))
	b = binary.LittleEndian.AppendUint64(b, uint64(m.DiskSize))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(m.Hashes)))
	b = append(b, m.Image[:]...)
	b = append(b, m.Pass[:]...)
	b = append(b, m.Parent[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.Created.UnixNano()))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(name)))
	b = append(b, name...)
	for _, h := range m.Hashes {
		b = append(b, h[:]...)
	}
	return binary.LittleEndian.AppendUint64(b, xxh3.Hash(b)), nil
}

// UnmarshalBinary decodes a manifest written by MarshalBinary, checking its
// structure and check sum.
func (m *Manifest) UnmarshalBinary(b []byte) error {
	if len(b) < manifestHeader+8 || string(b[:8]) != manifestMagic {
		return errors.New("not a vmmkit manifest")
	}
	body, sum := b[:len(b)-8], binary.LittleEndian.Uint64(b[len(b)-8:])
	if xxh3.Hash(body) != sum {
		return errors.New("check sum mismatch (truncated or damaged)")
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != manifestVersion {
		return fmt.Errorf("version %d, want %d", v, manifestVersion)
	}
	p := b[16:]
	chunk := int64(binary.LittleEndian.Uint64(p))
	size := int64(binary.LittleEndian.Uint64(p[8:]))
	n := binary.LittleEndian.Uint64(p[16:])
	if chunk < 4096 || chunk&(chunk-1) != 0 || size <= 0 || n > maxChunks || int64(n) != chunkCount(size, chunk) {
		return fmt.Errorf("chunk size %d, disk size %d and %d chunks disagree", chunk, size, n)
	}
	p = p[24:]
	var out Manifest
	out.ChunkSize, out.DiskSize = chunk, size
	copy(out.Image[:], p[:16])
	copy(out.Pass[:], p[16:32])
	copy(out.Parent[:], p[32:48])
	out.Created = time.Unix(0, int64(binary.LittleEndian.Uint64(p[48:]))).UTC()
	nl := int(binary.LittleEndian.Uint16(p[56:]))
	p = p[58:]
	if len(p) != nl+16*int(n)+8 {
		return fmt.Errorf("%d bytes of body, want %d", len(p), nl+16*int(n)+8)
	}
	out.Source = string(p[:nl])
	p = p[nl:]
	out.Hashes = make([]Hash, n)
	for i := range out.Hashes {
		copy(out.Hashes[i][:], p[16*i:])
	}
	*m = out
	return nil
}

// ReadManifest reads the manifest at path. Errors are *ManifestError.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &ManifestError{Path: path, Reason: "cannot read", Err: err}
	}
	m := new(Manifest)
	if err := m.UnmarshalBinary(b); err != nil {
		return nil, &ManifestError{Path: path, Reason: err.Error()}
	}
	return m, nil
}

// WriteFile writes the manifest to path atomically: a crash leaves either
// the old file or the new one, never a mix.
func (m *Manifest) WriteFile(path string) error {
	b, _ := m.MarshalBinary()
	return writeFileAtomic(path, b)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("p2v: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("p2v: writing %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("p2v: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("p2v: syncing directory %s: %w", dir, err)
	}
	return nil
}

// checkAgainst verifies that m describes img: same UUID and size, and a
// sample of chunks whose image content hashes as recorded. skip names chunks
// known to differ (an interrupted in-place pass changed them).
func (m *Manifest) checkAgainst(path string, img *vhd.Disk, skip func(int) bool) error {
	info := img.Info()
	switch {
	case info.UUID != m.Image:
		return &ManifestError{Path: path, Reason: fmt.Sprintf("describes image %s, but %s is %s", m.Image, img.Name(), info.UUID)}
	case img.Size() < m.DiskSize:
		return &ManifestError{Path: path, Reason: fmt.Sprintf("describes a %d-byte disk, but %s is %d bytes", m.DiskSize, img.Name(), img.Size())}
	}
	if par := img.Parent(); par != nil && m.Parent != ([16]byte{}) {
		// The parent's own manifest says whether the parent is still what
		// it was when this child was made; a parent recaptured in place is
		// not, and the child now reads a mix of two moments. (VHDX notices
		// by itself through the data write GUID; VHD cannot.)
		if pm, err := ReadManifest(ManifestPath(par.Name())); err == nil && pm.Pass != m.Parent {
			return &ManifestError{Path: path, Reason: fmt.Sprintf("the parent image %s was recaptured after %s was made from it, so %s no longer holds a consistent disk", par.Name(), img.Name(), img.Name())}
		}
	}
	const samples = 8
	n := len(m.Hashes)
	buf := make([]byte, m.ChunkSize)
	checked := 0
	for k := 0; k < n && checked < samples; k += max(1, n/samples) {
		if skip != nil && skip(k) {
			continue
		}
		b := buf[:min(m.ChunkSize, m.DiskSize-int64(k)*m.ChunkSize)]
		if err := readFull(img, b, int64(k)*m.ChunkSize); err != nil {
			return &ManifestError{Path: path, Reason: "reading the image to check it", Err: err}
		}
		if hashOf(b) != m.Hashes[k] {
			return &ManifestError{Path: path, Reason: fmt.Sprintf("chunk %d of %s does not hold what the manifest records: the image was changed after the manifest was written, or they do not belong together", k, img.Name())}
		}
		checked++
	}
	return nil
}

// zeroHashes caches the hash of an all-zero chunk by length.
type zeroHashes map[int64]Hash

func (z zeroHashes) of(n int64) Hash {
	h, ok := z[n]
	if !ok {
		h = hashOf(make([]byte, n))
		z[n] = h
	}
	return h
}

// readFull reads len(p) bytes at off; io.EOF with all of them read is no
// error (io.ReaderAt allows it at the end of the input).
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	return err
}
