package vhd

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// The VHDX log: a circular buffer of entries, each a header, descriptors and
// 4 KiB data sectors, that records metadata writes before they are made in
// place, so that a crash in between can be repaired by replaying it.

const (
	logSector       = 4096
	logHeaderSize   = 64
	logDescSize     = 32
	logDataPayload  = 4084
	maxLogBytes     = 64 << 20
	maxReplayPages  = 16 << 10  // 64 MiB of replayed pages at most
	maxZeroReplayed = 256 << 20 // zeros one entry may write
	maxLogTarget    = 64 << 40  // no VHDX file is larger
)

// A logWrite is one 4 KiB-aligned write that a log entry records: data of
// a whole 4 KiB sector, or (data nil) zeros over length bytes.
type logWrite struct {
	off    int64
	data   []byte // logSector bytes, or nil for zeros
	length int64  // for zeros
}

type logEntry struct {
	pos        int64 // offset in the log
	length     int64
	seq        uint64
	tail       uint32
	flushedOff uint64
	lastOff    uint64
	writes     []logWrite
}

// circular reads n bytes of the log from pos, wrapping at its end.
func circular(log []byte, pos, n int64) []byte {
	out := make([]byte, n)
	for i := int64(0); i < n; {
		p := (pos + i) % int64(len(log))
		i += int64(copy(out[i:], log[p:]))
	}
	return out
}

// parseLogEntry decodes the entry at pos, or returns nil if there is no
// valid entry of the log identified by guid there.
func parseLogEntry(log []byte, pos int64, guid UUID) *logEntry {
	le := binary.LittleEndian
	if pos+logHeaderSize > int64(len(log)) {
		return nil
	}
	h := log[pos:]
	if string(h[0:4]) != "loge" {
		return nil
	}
	length := int64(le.Uint32(h[8:]))
	count := int64(le.Uint32(h[24:]))
	if length < logSector || length%logSector != 0 || length > int64(len(log)) || UUID(h[32:48]) != guid {
		return nil
	}
	descBytes := alignUp(logHeaderSize+count*logDescSize, logSector)
	b := circular(log, pos, length)
	if sum := vhdxChecksum(b, 4); sum != le.Uint32(b[4:]) {
		return nil
	}
	e := &logEntry{
		pos: pos, length: length,
		tail:       le.Uint32(b[12:]),
		seq:        le.Uint64(b[16:]),
		flushedOff: le.Uint64(b[48:]),
		lastOff:    le.Uint64(b[56:]),
	}
	if e.seq == 0 || descBytes > length {
		return nil
	}
	data := descBytes
	var zeros int64
	if e.lastOff > maxLogTarget {
		return nil
	}
	for i := range count {
		d := b[logHeaderSize+i*logDescSize:]
		off := int64(le.Uint64(d[16:]))
		if le.Uint64(d[24:]) != e.seq || off%logSector != 0 || off < 0 {
			return nil
		}
		switch string(d[0:4]) {
		case "zero":
			n := int64(le.Uint64(d[8:]))
			zeros += n
			if n%logSector != 0 || n < 0 || zeros > maxZeroReplayed || off > maxLogTarget {
				return nil
			}
			e.writes = append(e.writes, logWrite{off: off, length: n})
		case "desc":
			if data+logSector > length || off > maxLogTarget {
				return nil
			}
			s := b[data : data+logSector]
			data += logSector
			if string(s[0:4]) != "data" || le.Uint32(s[4:]) != uint32(e.seq>>32) || le.Uint32(s[4092:]) != uint32(e.seq) {
				return nil
			}
			sector := make([]byte, logSector)
			copy(sector[0:8], d[8:16])                  // leading bytes
			copy(sector[8:8+logDataPayload], s[8:4092]) // data
			copy(sector[4092:], d[4:8])                 // trailing bytes
			e.writes = append(e.writes, logWrite{off: off, data: sector})
		default:
			return nil
		}
	}
	return e
}

// activeSequence finds the entries to replay: the valid sequence whose head
// (last entry) has the highest sequence number, running from the head's
// tail to the head with consecutive sequence numbers.
func activeSequence(log []byte, guid UUID) []*logEntry {
	var best []*logEntry
	n := int64(len(log))
	// Each position is parsed once: a chain is followed from every start.
	parsed := make(map[int64]*logEntry)
	parseLogEntry := func(log []byte, pos int64, guid UUID) *logEntry {
		e, ok := parsed[pos]
		if !ok {
			e = parseLogEntry(log, pos, guid)
			parsed[pos] = e
		}
		return e
	}
	for start := int64(0); start < n; start += logSector {
		first := parseLogEntry(log, start, guid)
		if first == nil {
			continue
		}
		seq := []*logEntry{first}
		for pos, total := (start+first.length)%n, first.length; total < n; {
			next := parseLogEntry(log, pos, guid)
			if next == nil || next.seq != seq[len(seq)-1].seq+1 {
				break
			}
			seq = append(seq, next)
			total += next.length
			pos = (pos + next.length) % n
		}
		head := seq[len(seq)-1]
		i := slices.IndexFunc(seq, func(e *logEntry) bool { return e.pos == int64(head.tail) })
		if i < 0 {
			continue
		}
		if best == nil || head.seq > best[len(best)-1].seq {
			best = seq[i:]
		}
	}
	return best
}

// encodeLogEntry builds an entry at log position pos (tail given) that
// records the 4 KiB sector writes ws.
func encodeLogEntry(guid UUID, seq uint64, tail uint32, fileSize uint64, ws []logWrite) []byte {
	le := binary.LittleEndian
	descBytes := alignUp(logHeaderSize+int64(len(ws))*logDescSize, logSector)
	b := make([]byte, descBytes+int64(len(ws))*logSector)
	copy(b[0:4], "loge")
	le.PutUint32(b[8:], uint32(len(b)))
	le.PutUint32(b[12:], tail)
	le.PutUint64(b[16:], seq)
	le.PutUint32(b[24:], uint32(len(ws)))
	copy(b[32:48], guid[:])
	le.PutUint64(b[48:], fileSize)
	le.PutUint64(b[56:], fileSize)
	for i, w := range ws {
		d := b[logHeaderSize+i*logDescSize:]
		s := b[descBytes+int64(i)*logSector:]
		copy(d[0:4], "desc")
		copy(d[4:8], w.data[4092:])
		copy(d[8:16], w.data[0:8])
		le.PutUint64(d[16:], uint64(w.off))
		le.PutUint64(d[24:], seq)
		copy(s[0:4], "data")
		le.PutUint32(s[4:], uint32(seq>>32))
		copy(s[8:4092], w.data[8:4092])
		le.PutUint32(s[4092:], uint32(seq))
	}
	le.PutUint32(b[4:], vhdxChecksum(b, 4))
	return b
}

// overlay is storage that shows replayed log writes over a read-only file
// without changing it.
type overlay struct {
	storage
	pages map[int64][]byte // 4 KiB pages by offset; nil slices read as zeros
	size  int64
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.storage.ReadAt(p, off)
	if n < len(p) && off+int64(len(p)) <= o.size {
		clear(p[n:]) // the log extended the file
		n, err = len(p), nil
	}
	for pg := off &^ (logSector - 1); pg < off+int64(len(p)); pg += logSector {
		data, ok := o.pages[pg]
		if !ok {
			continue
		}
		from, to := max(pg, off), min(pg+logSector, off+int64(len(p)))
		if data == nil {
			clear(p[from-off : to-off])
		} else {
			copy(p[from-off:to-off], data[from-pg:to-pg])
		}
	}
	return n, err
}

// replayLog applies the active sequence of the log at logOff: to the file
// when the disk is writable, and otherwise to an overlay over it. It
// returns the storage to read the image through and the file size after the
// replay.
func replayLog(st storage, writable bool, fileSize int64, h *vhdxHeaderInfo) (storage, int64, error) {
	n := int64(h.logLength)
	if n == 0 || n%vhdxMB != 0 || n > maxLogBytes || int64(h.logOffset)%vhdxMB != 0 || h.logOffset > uint64(fileSize) || int64(h.logOffset)+n > fileSize {
		return nil, 0, formatErr(h.off+68, "VHDX header", detail(ErrFormat, "log of %d bytes at %#x", h.logLength, h.logOffset))
	}
	log := make([]byte, n)
	if err := readFull(st, log, int64(h.logOffset)); err != nil {
		return nil, 0, err
	}
	seq := activeSequence(log, h.logGUID)
	if seq == nil {
		return st, fileSize, nil // nothing to replay
	}
	newSize := fileSize
	for _, e := range seq {
		newSize = max(newSize, int64(e.lastOff))
		if e.flushedOff > uint64(fileSize) {
			return nil, 0, formatErr(int64(h.logOffset)+e.pos, "log entry", detail(ErrFormat, "the file is %d bytes, shorter than the %d the log says were flushed", fileSize, e.flushedOff))
		}
	}
	if writable {
		for _, e := range seq {
			for _, w := range e.writes {
				var err error
				if w.data != nil {
					err = writeFull(st, w.data, w.off)
				} else {
					err = writeZeros(st, w.off, w.length)
				}
				if err != nil {
					return nil, 0, fmt.Errorf("vhd: replay log: %w", err)
				}
			}
		}
		if newSize > fileSize {
			if err := st.Truncate(newSize); err != nil {
				return nil, 0, err
			}
		}
		return st, newSize, st.Sync()
	}
	o := &overlay{storage: st, pages: make(map[int64][]byte), size: newSize}
	for _, e := range seq {
		for _, w := range e.writes {
			if w.data != nil {
				o.pages[w.off] = w.data
				continue
			}
			if int64(len(o.pages))+w.length/logSector > maxReplayPages {
				return nil, 0, formatErr(int64(h.logOffset)+e.pos, "log entry", detail(ErrUnsupported, "replaying more than %d pages read-only", maxReplayPages))
			}
			for pg := w.off; pg < w.off+w.length; pg += logSector {
				o.pages[pg] = nil
			}
		}
		if len(o.pages) > maxReplayPages {
			return nil, 0, formatErr(int64(h.logOffset)+e.pos, "log entry", detail(ErrUnsupported, "replaying more than %d pages read-only", maxReplayPages))
		}
	}
	return o, newSize, nil
}

func writeZeros(w storage, off, n int64) error {
	z := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(z)))
		if err := writeFull(w, z[:k], off); err != nil {
			return err
		}
		off, n = off+k, n-k
	}
	return nil
}
