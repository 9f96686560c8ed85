package vhd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var errCrash = errors.New("simulated crash")

// crashStorage is an in-memory file that "crashes" at its failAt-th write:
// that write lands torn and every later one is lost. A torn write keeps the
// whole sectors of its first half: disks write a sector atomically, so a
// write inside one sector lands whole or not at all.
type crashStorage struct {
	b      []byte
	writes int
	failAt int // -1: never
}

func (m *crashStorage) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *crashStorage) grow(n int64) {
	if n > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, n-int64(len(m.b)))...)
	}
}

func (m *crashStorage) WriteAt(p []byte, off int64) (int, error) {
	m.writes++
	if m.failAt >= 0 && m.writes > m.failAt {
		if end := (off + int64(len(p))/2) &^ (SectorSize - 1); m.writes == m.failAt+1 && end > off {
			torn := p[:end-off]
			m.grow(end)
			copy(m.b[off:], torn)
		}
		return 0, errCrash
	}
	m.grow(off + int64(len(p)))
	copy(m.b[off:], p)
	return len(p), nil
}

func (m *crashStorage) Truncate(n int64) error {
	m.writes++
	if m.failAt >= 0 && m.writes > m.failAt {
		return errCrash
	}
	m.grow(n)
	m.b = m.b[:n]
	return nil
}

func (m *crashStorage) Sync() error { return nil }

type crashWrite struct {
	off  int64
	data []byte
}

// crashScript is a fixed list of writes that allocate blocks, fill parts
// of them, write sub-sector pieces and zeros.
func crashScript(size int64) []crashWrite {
	r := rand.New(rand.NewPCG(11, 12))
	var ws []crashWrite
	for i := range 40 {
		off := r.Int64N(size - 1)
		n := min(size-off, 1+r.Int64N(20000))
		if i%5 == 0 {
			n = min(size-off, 1+r.Int64N(600))
		}
		ws = append(ws, crashWrite{off, fill(r, int(n))})
	}
	return ws
}

// TestCrashAtEveryWrite stops the image's writes at every point of a script
// (with the interrupted write torn in half) and checks that the image then
// opens, read-only and writable, with every completed write intact, and
// that it keeps working after the repair.
func TestCrashAtEveryWrite(t *testing.T) {
	for _, diff := range []bool{false, true} {
		t.Run(map[bool]string{false: "dynamic", true: "differencing"}[diff], func(t *testing.T) {
			dir := t.TempDir()
			const size = 256 << 10
			name := filepath.Join(dir, "img.vhd")
			base := make([]byte, size)
			if diff {
				p := filepath.Join(dir, "parent.vhd")
				pd := mustCreate(t, p, size, &CreateOptions{BlockSize: 8192})
				pm := newModel(t, pd, nil, 5)
				pm.randomWrites(20, 30000)
				copy(base, pm.ref)
				require.NoError(t, pd.Close())
				mustCreate(t, name, 0, &CreateOptions{Parent: p, BlockSize: 8192}).Close()
			} else {
				mustCreate(t, name, size, &CreateOptions{BlockSize: 8192}).Close()
			}
			initial, err := os.ReadFile(name)
			require.NoError(t, err)
			script := crashScript(size)

			run := func(failAt int) (st *crashStorage, ref []byte, torn *crashWrite) {
				st = &crashStorage{b: bytes.Clone(initial), failAt: failAt}
				d, err := newDisk(st, int64(len(st.b)), name, true, nil, nil, nil)
				require.NoError(t, err)
				defer d.Close()
				ref = bytes.Clone(base)
				for i, w := range script {
					if _, err := d.WriteAt(w.data, w.off); err != nil {
						require.ErrorIs(t, err, errCrash)
						return st, ref, &script[i]
					}
					copy(ref[w.off:], w.data)
				}
				return st, ref, nil
			}
			full, _, _ := run(-1)
			require.Greater(t, full.writes, len(script), "script must allocate blocks")

			for failAt := 0; failAt <= full.writes; failAt++ {
				st, ref, torn := run(failAt)
				img := st.b
				for _, writable := range []bool{false, true} {
					s := &crashStorage{b: bytes.Clone(img), failAt: -1}
					d, err := newDisk(s, int64(len(s.b)), name, writable, nil, nil, nil)
					require.NoError(t, err, "crash after %d writes: open (writable %v)", failAt, writable)
					got := readAll(t, d)
					checkCrashContent(t, got, ref, torn, failAt)
					if writable {
						// The repaired image takes new blocks and reads them back.
						m := newModel(t, d, got, uint64(failAt))
						m.randomWrites(5, 20000)
						m.check()
						_, err := newDisk(readOnly{bytes.NewReader(s.b)}, int64(len(s.b)), name, false, nil, nil, nil)
						require.NoError(t, err, "reopen after repair")
					}
					require.NoError(t, d.Close())
				}
			}
		})
	}
}

// checkCrashContent accepts got when every byte is the reference's, or, in
// the range of the interrupted write, that write's.
func checkCrashContent(t *testing.T, got, ref []byte, torn *crashWrite, failAt int) {
	t.Helper()
	if bytes.Equal(got, ref) {
		return
	}
	for i := range got {
		if got[i] == ref[i] {
			continue
		}
		if torn != nil && int64(i) >= torn.off && int64(i) < torn.off+int64(len(torn.data)) && got[i] == torn.data[int64(i)-torn.off] {
			continue
		}
		t.Fatalf("crash after %d writes: byte %d is %#x, want %#x", failAt, i, got[i], ref[i])
	}
}

// The SIGKILL test runs a writer in a child process (this test binary),
// kills it at a random moment and checks the image. The writer prints
// "synced N" after each Sync that covers writes 0..N.

const crashEnv = "VMM_VHD_CRASH_WRITER"

func killWrite(seed uint64, i int, size int64) crashWrite {
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	off := r.Int64N(size - 1)
	n := min(size-off, 1+r.Int64N(96<<10))
	if i%4 == 0 {
		n = min(size-off, 1+r.Int64N(1500))
	}
	return crashWrite{off, fill(r, int(n))}
}

func TestCrashWriterProcess(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("helper for TestSIGKILL; runs only as its child process")
	}
	// spec: image:seed:count
	parts := strings.Split(spec, ":")
	seed, _ := strconv.ParseUint(parts[1], 10, 64)
	count, _ := strconv.Atoi(parts[2])
	d, err := OpenFile(parts[0], os.O_RDWR, nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	out := bufio.NewWriter(os.Stdout)
	for i := range count {
		w := killWrite(seed, i, d.Size())
		if _, err := d.WriteAt(w.data, w.off); err != nil {
			fmt.Println("error", err)
			os.Exit(3)
		}
		if i%3 == 2 {
			if err := d.Sync(); err != nil {
				fmt.Println("error", err)
				os.Exit(3)
			}
			fmt.Fprintf(out, "synced %d\n", i)
			out.Flush()
		}
	}
	fmt.Fprintln(out, "done")
	out.Flush()
	os.Exit(0)
}

func TestSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns writer processes")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	for _, k := range []struct {
		name      string
		ext       string
		diff      bool
		blockSize int64
	}{
		{"vhd dynamic", ".vhd", false, 64 << 10},
		{"vhd differencing", ".vhd", true, 64 << 10},
		{"vhdx dynamic", ".vhdx", false, 1 << 20},
		{"vhdx differencing", ".vhdx", true, 1 << 20},
	} {
		t.Run(k.name, func(t *testing.T) {
			const size = 16 << 20
			name, ref := crashImage(t, t.TempDir(), k.ext, k.diff, size, k.blockSize)
			r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
			const count = 3000
			killed := 0
			for round := range 20 {
				seed := r.Uint64()
				cmd := exec.Command(exe, "-test.run=^TestCrashWriterProcess$")
				cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d:%d", crashEnv, name, seed, count))
				stdout, err := cmd.StdoutPipe()
				require.NoError(t, err)
				require.NoError(t, cmd.Start())
				lines := make(chan string, 4096)
				go func() {
					sc := bufio.NewScanner(stdout)
					for sc.Scan() {
						lines <- sc.Text()
					}
					close(lines)
				}()
				// Let the writer get going, then kill it at a random moment.
				delay := time.Duration(5+r.IntN(120)) * time.Millisecond
				timer := time.NewTimer(delay)
				synced := -1
				done := false
			wait:
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							break wait
						}
						switch {
						case strings.HasPrefix(l, "synced "):
							synced, _ = strconv.Atoi(strings.TrimPrefix(l, "synced "))
						case l == "done":
							done = true
						case strings.HasPrefix(l, "error"):
							t.Fatalf("writer: %s", l)
						}
					case <-timer.C:
						_ = cmd.Process.Kill() // SIGKILL
						killed++
						for l := range lines {
							if strings.HasPrefix(l, "synced ") {
								synced, _ = strconv.Atoi(strings.TrimPrefix(l, "synced "))
							}
						}
						break wait
					}
				}
				_ = cmd.Wait()
				timer.Stop()

				// Every byte is what the synced writes left, or what one of
				// the later writes (which may or may not have landed) put there.
				d, err := Open(name)
				require.NoError(t, err, "round %d: open after kill", round)
				got := readAll(t, d)
				require.NoError(t, d.Close())
				for i := 0; i <= synced; i++ {
					w := killWrite(seed, i, size)
					copy(ref[w.off:], w.data)
				}
				if !done {
					// The writer syncs every third write and says so before
					// the next write, so at most the three writes after the
					// last one it reported can have landed.
					var later []crashWrite
					for i := synced + 1; i < min(count, synced+4); i++ {
						later = append(later, killWrite(seed, i, size))
					}
					for i := 0; i < len(got); i++ {
						if end := min(i+4096, len(got)); i%4096 == 0 && bytes.Equal(got[i:end], ref[i:end]) {
							i = end - 1 // a whole equal page
							continue
						}
						if got[i] == ref[i] {
							continue
						}
						ok := false
						for _, w := range later {
							if int64(i) >= w.off && int64(i) < w.off+int64(len(w.data)) && got[i] == w.data[int64(i)-w.off] {
								ok = true
								break
							}
						}
						require.True(t, ok, "round %d: byte %d is %#x, want %#x (synced through write %d)", round, i, got[i], ref[i], synced)
					}
				} else {
					require.Equal(t, count-1, synced)
					require.True(t, bytes.Equal(ref, got), "round %d: content after a clean finish", round)
				}
				t.Logf("round %d: killed after %v, synced through write %d, done=%v", round, delay, synced, done)
				// The next round continues on the image as it is now.
				copy(ref, got)
			}
			require.Positive(t, killed, "no writer was killed mid-run")
		})
	}
}

// powerStorage is an in-memory file with a power switch: writes since the
// last Sync may reach the disk in any order, each whole, torn at a sector
// boundary, or not at all, and a file-size change may be lost with them.
type powerStorage struct {
	ops     int          // operations so far
	failAt  int          // the power fails before operation failAt+1; -1: never
	durable []byte       // what the disk holds for certain
	visible []byte       // what the process sees
	pending []crashWrite // writes since the last Sync, in order
}

func (m *powerStorage) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.visible)) {
		return 0, io.EOF
	}
	n := copy(p, m.visible[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func apply(b []byte, w crashWrite) []byte {
	if end := w.off + int64(len(w.data)); end > int64(len(b)) {
		b = append(b, make([]byte, end-int64(len(b)))...)
	}
	copy(b[w.off:], w.data)
	return b
}

// cut counts an operation and reports whether the power is off.
func (m *powerStorage) cut() bool {
	m.ops++
	return m.failAt >= 0 && m.ops > m.failAt
}

func (m *powerStorage) WriteAt(p []byte, off int64) (int, error) {
	if m.cut() {
		return 0, errCrash
	}
	w := crashWrite{off, bytes.Clone(p)}
	m.visible = apply(m.visible, w)
	m.pending = append(m.pending, w)
	return len(p), nil
}

func (m *powerStorage) Truncate(n int64) error {
	if m.cut() {
		return errCrash
	}
	if n <= int64(len(m.visible)) {
		m.visible = m.visible[:n]
	} else {
		m.visible = append(m.visible, make([]byte, n-int64(len(m.visible)))...)
	}
	m.pending = append(m.pending, crashWrite{off: n, data: nil}) // a size change
	return nil
}

func (m *powerStorage) Sync() error {
	if m.cut() {
		return errCrash
	}
	m.durable = bytes.Clone(m.visible)
	m.pending = nil
	return nil
}

// powerLoss returns the file as the disk may hold it after a power loss.
func (m *powerStorage) powerLoss(r *rand.Rand) []byte {
	b := bytes.Clone(m.durable)
	for _, w := range m.pending {
		if w.data == nil { // a size change, made or lost
			if r.IntN(2) == 0 {
				if w.off <= int64(len(b)) {
					b = b[:w.off]
				} else {
					b = append(b, make([]byte, w.off-int64(len(b)))...)
				}
			}
			continue
		}
		switch r.IntN(3) {
		case 0: // lost
		case 1:
			b = apply(b, w)
		case 2:
			if end := (w.off + int64(len(w.data))/2) &^ (SectorSize - 1); end > w.off {
				b = apply(b, crashWrite{w.off, w.data[:end-w.off]})
			}
		}
	}
	// The new file size may not have reached the disk even where data did.
	if r.IntN(2) == 0 && len(b) > len(m.durable) {
		b = b[:len(m.durable)]
	}
	return b
}

// TestPowerLoss cuts the power at random points of a write script in which
// the writer syncs now and then. Writes since the last sync reach the disk
// in any order or not at all. The image must open, read-only and writable,
// and every sector that no unsynced write touched must read as synced.
// crashKinds are the images the crash tests write to.
var crashKinds = []struct {
	name      string
	ext       string
	diff      bool
	size      int64
	blockSize int64
}{
	{"vhd dynamic", ".vhd", false, 256 << 10, 8192},
	{"vhd differencing", ".vhd", true, 256 << 10, 8192},
	{"vhdx dynamic", ".vhdx", false, 6 << 20, 1 << 20},
	{"vhdx differencing", ".vhdx", true, 6 << 20, 1 << 20},
}

// crashImage makes an empty image of a crash kind in dir (over a parent
// with random content for a differencing kind) and returns its name and
// initial content.
func crashImage(t *testing.T, dir string, ext string, diff bool, size, blockSize int64) (string, []byte) {
	t.Helper()
	name := filepath.Join(dir, "img"+ext)
	base := make([]byte, size)
	if diff {
		p := filepath.Join(dir, "parent"+ext)
		pd := mustCreate(t, p, size, &CreateOptions{BlockSize: blockSize})
		pm := newModel(t, pd, nil, 5)
		pm.randomWrites(20, size/8)
		copy(base, pm.ref)
		require.NoError(t, pd.Close())
		require.NoError(t, mustCreate(t, name, 0, &CreateOptions{Parent: p, BlockSize: blockSize}).Close())
	} else {
		require.NoError(t, mustCreate(t, name, size, &CreateOptions{BlockSize: blockSize}).Close())
	}
	return name, base
}

func TestPowerLoss(t *testing.T) {
	for _, k := range crashKinds {
		t.Run(k.name, func(t *testing.T) {
			size := k.size
			name, base := crashImage(t, t.TempDir(), k.ext, k.diff, k.size, k.blockSize)
			initial, err := os.ReadFile(name)
			require.NoError(t, err)
			script := crashScript(size)
			r := rand.New(rand.NewPCG(21, 22))
			// Count the storage operations of a full run, then cut the
			// power before a random one of them in each trial, inside a
			// Sync as often as between writes.
			full := &powerStorage{durable: bytes.Clone(initial), visible: bytes.Clone(initial), failAt: -1}
			fd, err := newDisk(full, int64(len(initial)), name, true, nil, nil, nil)
			require.NoError(t, err)
			for i, w := range script {
				_, err := fd.WriteAt(w.data, w.off)
				require.NoError(t, err)
				if i%4 == 3 {
					require.NoError(t, fd.Sync())
				}
			}
			trials := 250
			if k.ext == ".vhdx" {
				trials = 80
			}
			for trial := range trials {
				st := &powerStorage{durable: bytes.Clone(initial), visible: bytes.Clone(initial), failAt: r.IntN(full.ops + 1)}
				d, err := newDisk(st, int64(len(initial)), name, true, nil, nil, nil)
				require.NoError(t, err)
				synced := bytes.Clone(base)
				ref := bytes.Clone(base)
				lastSync := 0 // index of the first write since the last good Sync
				stop := len(script)
				for i, w := range script {
					if _, err := d.WriteAt(w.data, w.off); err != nil {
						require.ErrorIs(t, err, errCrash)
						stop = i + 1
						break
					}
					copy(ref[w.off:], w.data)
					if i%4 == 3 {
						if err := d.Sync(); err != nil {
							require.ErrorIs(t, err, errCrash)
							stop = i + 1
							break
						}
						copy(synced, ref)
						lastSync = i + 1
					}
				}
				// Sectors that the writes since the last sync touched may
				// hold anything: the disk promises no more for unsynced data.
				touched := make([]bool, size)
				for i := lastSync; i < stop; i++ {
					w := script[i]
					s0 := w.off &^ (SectorSize - 1)
					s1 := alignUp(w.off+int64(len(w.data)), SectorSize)
					for j := s0; j < s1; j++ {
						touched[j] = true
					}
				}
				img := st.powerLoss(r)
				for _, writable := range []bool{false, true} {
					s := &crashStorage{b: bytes.Clone(img), failAt: -1}
					d, err := newDisk(s, int64(len(s.b)), name, writable, nil, nil, nil)
					require.NoError(t, err, "trial %d: open after power loss (writable %v)", trial, writable)
					got := readAll(t, d)
					same := bytes.Equal(got, synced)
					for i := 0; i < len(got) && !same; i++ {
						if !touched[i] && got[i] != synced[i] {
							t.Fatalf("trial %d (writable %v): byte %d is %#x, synced %#x", trial, writable, i, got[i], synced[i])
						}
					}
					if writable {
						m := newModel(t, d, got, uint64(trial))
						m.randomWrites(3, 20000)
						m.check()
					}
					require.NoError(t, d.Close())
				}
			}
		})
	}
}
