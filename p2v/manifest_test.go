package p2v

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zeebo/xxh3"
)

func sampleManifest() *Manifest {
	m := &Manifest{ChunkSize: 1 << 20, DiskSize: 5<<20 + 512, Source: "/dev/sdx", Created: time.Unix(1700000000, 5).UTC()}
	m.Image[0], m.Pass[1], m.Parent[2] = 1, 2, 3
	m.Hashes = make([]Hash, chunkCount(m.DiskSize, m.ChunkSize))
	for i := range m.Hashes {
		m.Hashes[i] = hashOf([]byte{byte(i)})
	}
	return m
}

func TestManifestRoundTrip(t *testing.T) {
	m := sampleManifest()
	p := filepath.Join(t.TempDir(), "x.manifest")
	require.NoError(t, m.WriteFile(p))
	got, err := ReadManifest(p)
	require.NoError(t, err)
	assert.Equal(t, m, got)
	assert.NoFileExists(t, p+".tmp")

	b, _ := m.MarshalBinary()
	for _, cut := range []int{0, 10, len(b) / 2, len(b) - 1} {
		var x Manifest
		assert.Error(t, x.UnmarshalBinary(b[:cut]), "cut at %d", cut)
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x10
		var x Manifest
		assert.Error(t, x.UnmarshalBinary(c), "flipped byte %d", i)
	}
}

func FuzzManifest(f *testing.F) {
	b, _ := sampleManifest().MarshalBinary()
	f.Add(b)
	f.Add([]byte(manifestMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Manifest
		if m.UnmarshalBinary(b) != nil {
			return
		}
		if int64(len(m.Hashes)) != chunkCount(m.DiskSize, m.ChunkSize) {
			t.Fatalf("accepted %d hashes for %d bytes in %d-byte chunks", len(m.Hashes), m.DiskSize, m.ChunkSize)
		}
		again, _ := m.MarshalBinary()
		if !bytes.Equal(again, b) {
			t.Fatal("accepted bytes that do not round-trip")
		}
	})
}

func TestJournalReplay(t *testing.T) {
	p := filepath.Join(t.TempDir(), "j")
	h := journalHeader{Mode: captureFull, ChunkSize: 4096, DiskSize: 10 * 4096, Chunks: 10}
	j, err := createJournal(p, h)
	require.NoError(t, err)
	require.NoError(t, j.intent(0, 4))
	hs := []Hash{{1}, {2}, {3}, {4}}
	require.NoError(t, j.done(0, hs, true))
	require.NoError(t, j.intent(4, 4))
	require.NoError(t, j.close())
	// A torn record at the tail is ignored and trimmed.
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.Write([]byte{2, 0, 0, 0, 0, 0, 0, 0, 8})
	require.NoError(t, err)
	f.Close()

	j, state, got, err := openJournal(p)
	require.NoError(t, err)
	assert.Equal(t, h, j.hdr)
	assert.Equal(t, []uint8{2, 2, 2, 2, 1, 1, 1, 1, 0, 0}, state)
	assert.Equal(t, hs, got[:4])
	require.NoError(t, j.done(4, []Hash{{5}, {6}, {7}, {8}}, true))
	j.close()
	j, state, _, err = openJournal(p)
	require.NoError(t, err)
	assert.Equal(t, []uint8{2, 2, 2, 2, 2, 2, 2, 2, 0, 0}, state, "records after a trimmed tail are read")

	// A second capture into the same image is refused while one runs.
	var je *JournalError
	_, _, _, err = openJournal(p)
	require.ErrorAs(t, err, &je)
	assert.Contains(t, err.Error(), "another capture")
	j.close()

	require.NoError(t, os.WriteFile(p, bytes.Repeat([]byte("junk"), jHeaderLen), 0o644))
	_, _, _, err = openJournal(p)
	require.ErrorAs(t, err, &je)
	require.NoError(t, os.WriteFile(p, []byte("VMMKP2VJ"), 0o644))
	_, _, _, err = openJournal(p)
	require.ErrorIs(t, err, errTornJournal)
}

// FuzzJournalReplay replays records whose check sums are right but whose
// fields are anything: replay must stay inside the chunk arrays.
func FuzzJournalReplay(f *testing.F) {
	f.Add(uint32(recIntent), uint64(0), uint64(4), []byte{})
	f.Add(uint32(recDone), uint64(14), uint64(2), make([]byte, 32))
	f.Add(uint32(recDone), uint64(1<<63), uint64(1<<63), make([]byte, 16))
	f.Fuzz(func(t *testing.T, kind uint32, first, count uint64, tail []byte) {
		b := binary.LittleEndian.AppendUint32(nil, kind)
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint64(b, first)
		b = binary.LittleEndian.AppendUint64(b, count)
		b = append(b, tail...)
		b = binary.LittleEndian.AppendUint64(b, xxh3.Hash(b))
		state := make([]uint8, 16)
		hashes := make([]Hash, 16)
		n := replay(b, state, hashes)
		if n < 0 || n > len(b) {
			t.Fatalf("replay consumed %d of %d bytes", n, len(b))
		}
	})
}
