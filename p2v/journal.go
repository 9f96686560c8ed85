package p2v

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/zeebo/xxh3"

	"github.com/vmmkit/vmmkit/vhd"
)

// The journal makes a capture resumable and keeps an interrupted one from
// leaving an image whose chunks nobody can vouch for. Beside the image, while
// a capture runs, it records:
//
//   - an intent for a range of chunks, synced before any of them is written;
//   - a done record with the new hashes of that range, appended after the
//     image has been synced.
//
// On resume, chunks with a done record are known (their hashes are the
// record's) and are not read again; chunks with an intent but no done record
// may hold anything and are written again unconditionally, whatever the
// previous manifest says of them. A record torn by a crash fails its check
// and ends the replay.

const (
	journalMagic   = "VMMKP2VJ"
	journalVersion = 1
	jHeaderLen     = 8 + 4 + 4 + 8 + 8 + 8 + 16 + 16 + 16 + 8
	recIntent      = 1
	recDone        = 2
)

// journalPath returns the path of the journal of image.
func journalPath(image string) string { return image + ".p2v-journal" }

// journalHeader identifies what a journal belongs to.
type journalHeader struct {
	Mode      uint32 // captureFull, captureChild, captureInPlace
	ChunkSize int64
	DiskSize  int64
	Chunks    int64
	Pass      [16]byte // ID of the capture; the manifest it ends with carries it
	Base      [16]byte // Pass of the previous manifest; zero for a full capture
	Image     vhd.UUID // UUID of the image being written
}

type journal struct {
	f     *os.File
	path  string
	hdr   journalHeader
	empty bool // replayed no record: nothing was written to the image
}

// chunk states replayed from a journal
const (
	chunkUnknown = iota // nothing recorded: as the base manifest says
	chunkDirty          // written, maybe partly: rewrite unconditionally
	chunkDone           // written and synced: hash recorded
)

func (h *journalHeader) marshal() []byte {
	b := make([]byte, 0, jHeaderLen)
	b = append(b, journalMagic...)
	b = binary.LittleEndian.AppendUint32(b, journalVersion)
	b = binary.LittleEndian.AppendUint32(b, h.Mode)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.ChunkSize))
	b = binary.LittleEndian.AppendUint64(b, uint64(h.DiskSize))
	b = binary.LittleEndian.AppendUint64(b, uint64(h.Chunks))
	b = append(b, h.Pass[:]...)
	b = append(b, h.Base[:]...)
	b = append(b, h.Image[:]...)
	return binary.LittleEndian.AppendUint64(b, xxh3.Hash(b))
}

// createJournal makes a new journal; it fails if one exists.
func createJournal(path string, h journalHeader) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("p2v: creating journal: %w", err)
	}
	j := &journal{f: f, path: path, hdr: h}
	if _, err := f.Write(h.marshal()); err != nil {
		j.remove()
		return nil, fmt.Errorf("p2v: writing journal %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		j.remove()
		return nil, fmt.Errorf("p2v: syncing journal %s: %w", path, err)
	}
	// The journal's name must be durable before anything it protects is
	// written, or a power loss could keep the writes and lose the journal.
	if err := syncDir(filepath.Dir(path)); err != nil {
		j.remove()
		return nil, err
	}
	if err := lockFile(f); err != nil {
		j.remove()
		return nil, fmt.Errorf("p2v: journal %s: %w", path, err)
	}
	return j, nil
}

// A JournalError reports a journal that cannot be resumed from.
type JournalError struct {
	Path   string
	Reason string
}

func (e *JournalError) Error() string {
	return fmt.Sprintf("p2v: journal %s: %s", e.Path, e.Reason)
}

// openJournal opens an existing journal and replays it into per-chunk states
// and hashes. It returns nil, nil, nil, nil when there is no journal.
func openJournal(path string) (*journal, []uint8, []Hash, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("p2v: opening journal: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, nil, nil, &JournalError{Path: path, Reason: "another capture into the same image is running (" + err.Error() + ")"}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, nil, fmt.Errorf("p2v: reading journal %s: %w", path, err)
	}
	fail := func(reason string) (*journal, []uint8, []Hash, error) {
		f.Close()
		return nil, nil, nil, &JournalError{Path: path, Reason: reason}
	}
	if len(b) < jHeaderLen || zeroBytes(b[:jHeaderLen]) {
		f.Close()
		return nil, nil, nil, errTornJournal
	}
	if string(b[:8]) != journalMagic ||
		xxh3.Hash(b[:jHeaderLen-8]) != binary.LittleEndian.Uint64(b[jHeaderLen-8:]) {
		return fail("header damaged")
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != journalVersion {
		return fail(fmt.Sprintf("version %d, want %d", v, journalVersion))
	}
	var h journalHeader
	h.Mode = binary.LittleEndian.Uint32(b[12:])
	h.ChunkSize = int64(binary.LittleEndian.Uint64(b[16:]))
	h.DiskSize = int64(binary.LittleEndian.Uint64(b[24:]))
	h.Chunks = int64(binary.LittleEndian.Uint64(b[32:]))
	copy(h.Pass[:], b[40:])
	copy(h.Base[:], b[56:])
	copy(h.Image[:], b[72:])
	if h.ChunkSize < 4096 || h.DiskSize <= 0 || h.Chunks > maxChunks || h.Chunks != chunkCount(h.DiskSize, h.ChunkSize) {
		return fail("header describes an impossible disk")
	}
	state := make([]uint8, h.Chunks)
	hashes := make([]Hash, h.Chunks)
	end := replay(b[jHeaderLen:], state, hashes)
	// Cut a torn tail so that new records follow the last good one.
	if err := f.Truncate(int64(jHeaderLen + end)); err != nil {
		f.Close()
		return nil, nil, nil, fmt.Errorf("p2v: trimming journal %s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, nil, nil, fmt.Errorf("p2v: journal %s: %w", path, err)
	}
	return &journal{f: f, path: path, hdr: h, empty: end == 0}, state, hashes, nil
}

// errTornJournal reports a journal whose header was never completely
// written: the capture that made it stopped before creating its image.
var errTornJournal = errors.New("p2v: journal header incomplete")

// replay applies records to state and hashes and returns the length of the
// valid prefix.
func replay(b []byte, state []uint8, hashes []Hash) int {
	n := int64(len(state))
	off := 0
	for len(b)-off >= 32 {
		r := b[off:]
		kind := binary.LittleEndian.Uint32(r)
		first := int64(binary.LittleEndian.Uint64(r[8:]))
		count := int64(binary.LittleEndian.Uint64(r[16:]))
		if first < 0 || count <= 0 || count > n || first > n-count {
			break
		}
		size := 24 + 8
		if kind == recDone {
			size += 16 * int(count)
		}
		if len(r) < size || xxh3.Hash(r[:size-8]) != binary.LittleEndian.Uint64(r[size-8:]) {
			break
		}
		switch kind {
		case recIntent:
			for i := first; i < first+count; i++ {
				state[i] = chunkDirty
			}
		case recDone:
			for i := range count {
				state[first+i] = chunkDone
				copy(hashes[first+i][:], r[24+16*i:])
			}
		default:
			return off
		}
		off += size
	}
	return off
}

// intent records that chunks [first, first+count) are about to be written,
// and syncs the journal so the record is durable before any of them is.
func (j *journal) intent(first, count int64) error {
	b := make([]byte, 0, 32)
	b = binary.LittleEndian.AppendUint32(b, recIntent)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(first))
	b = binary.LittleEndian.AppendUint64(b, uint64(count))
	b = binary.LittleEndian.AppendUint64(b, xxh3.Hash(b))
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("p2v: journal %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("p2v: syncing journal %s: %w", j.path, err)
	}
	return nil
}

// done records the hashes of chunks [first, first+len(hs)). The caller has
// synced the image first. It syncs the journal when sync is set; records of
// ranges that wrote nothing need not be durable.
func (j *journal) done(first int64, hs []Hash, sync bool) error {
	b := make([]byte, 0, 32+16*len(hs))
	b = binary.LittleEndian.AppendUint32(b, recDone)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(first))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(hs)))
	for _, h := range hs {
		b = append(b, h[:]...)
	}
	b = binary.LittleEndian.AppendUint64(b, xxh3.Hash(b))
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("p2v: journal %s: %w", j.path, err)
	}
	if sync {
		if err := j.f.Sync(); err != nil {
			return fmt.Errorf("p2v: syncing journal %s: %w", j.path, err)
		}
	}
	return nil
}

func (j *journal) close() error { return j.f.Close() }

// remove deletes the journal: the capture it served has ended and its
// manifest is durable.
func (j *journal) remove() error {
	j.f.Close()
	if err := os.Remove(j.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("p2v: removing journal: %w", err)
	}
	return nil
}
