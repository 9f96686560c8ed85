package library

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The crash tests run a copy in a child process (this test binary), kill
// it with SIGKILL at a random moment, and resume in the next child, while
// the parent watches the destination name.

const copyChildEnv = "VMM_LIBRARY_COPY_CHILD"

// A slowShare makes reads slow enough that a kill lands mid-copy.
type slowShare struct{ Share }

func (s slowShare) Open(ctx context.Context, name string) (File, error) {
	f, err := s.Share.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	return slowFile{f}, nil
}

type slowFile struct{ File }

func (f slowFile) ReadAt(p []byte, off int64) (int, error) {
	time.Sleep(time.Millisecond)
	return f.File.ReadAt(p, off)
}

// copyChild is the spec a child runs: which copy, from where to where.
type copyChild struct {
	Mode     string // "share" (Copy to a DirShare) or "file" (CopyToFile)
	SrcDir   string
	Name     string
	Manifest *Manifest
	Dst      string // the destination share's directory, or the file path
}

func TestCopyCrashChild(t *testing.T) {
	spec := os.Getenv(copyChildEnv)
	if spec == "" {
		t.Skip("helper for TestCopySIGKILL; runs only as its child process")
	}
	var c copyChild
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	src, err := NewDirShare("src", "a", c.SrcDir)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	flushEvery = 4 * testChunk
	fmt.Println("copying")
	ctx := context.Background()
	opts := &CopyOptions{Workers: 2}
	switch c.Mode {
	case "share":
		var dst *DirShare
		dst, err = NewDirShare("dst", "b", c.Dst)
		if err == nil {
			err = Copy(ctx, slowShare{src}, c.Name, c.Manifest, dst, c.Name, opts)
		}
	case "file":
		err = CopyToFile(ctx, slowShare{src}, c.Name, c.Manifest, c.Dst, opts)
	}
	switch {
	case errors.Is(err, ErrExist):
		fmt.Println("exists")
	case err != nil:
		fmt.Println("error", err)
		os.Exit(3)
	default:
		fmt.Println("done")
	}
	os.Exit(0)
}

func TestCopySIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns copying processes")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	for _, mode := range []string{"share", "file"} {
		t.Run(mode, func(t *testing.T) {
			srcDir, dstDir := t.TempDir(), t.TempDir()
			const size = 8<<20 + 4321 // 129 chunks of 64 KiB
			data, m := putSource(t, srcDir, "disk.vhd", size, 42)
			dstPath := filepath.Join(dstDir, "disk.vhd")
			dst := dstDir
			if mode == "file" {
				dst = dstPath
			}
			spec, err := json.Marshal(copyChild{Mode: mode, SrcDir: srcDir, Name: "disk.vhd", Manifest: m, Dst: dst})
			require.NoError(t, err)

			seed := uint64(time.Now().UnixNano())
			r := rand.New(rand.NewPCG(seed, 2))
			killed, finished := 0, 0
			for round := range 16 {
				cmd := exec.Command(exe, "-test.run=^TestCopyCrashChild$")
				cmd.Env = append(os.Environ(), copyChildEnv+"="+string(spec))
				var out lockedBuffer
				cmd.Stdout, cmd.Stderr = &out, &out
				require.NoError(t, cmd.Start())
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()

				// Watch the destination name until the child is gone: it is
				// absent or whole, never partial.
				watchErr := make(chan error, 1)
				stop := make(chan struct{})
				go func() { watchErr <- watchWhole(stop, dstPath, data) }()

				for !strings.Contains(out.String(), "copying") {
					select {
					case err := <-exited:
						t.Fatalf("round %d: child exited before copying: %v: %s", round, err, out.String())
					case <-time.After(time.Millisecond):
					}
				}
				// 129 chunks at 1 ms a read over 2 workers: about 65 ms.
				select {
				case err := <-exited:
					require.NoError(t, err, "round %d: %s", round, out.String())
					finished++
				case <-time.After(time.Duration(r.IntN(70)) * time.Millisecond):
					cmd.Process.Kill() // SIGKILL
					<-exited
					killed++
				}
				close(stop)
				require.NoError(t, <-watchErr, "round %d (seed %d)", round, seed)
				require.NotContains(t, out.String(), "error", "round %d", round)

				if _, err := os.Stat(dstPath); err == nil {
					// Finished in this round: check it and start over, so
					// that every round kills a copy.
					got, err := os.ReadFile(dstPath)
					require.NoError(t, err)
					require.True(t, bytes.Equal(got, data), "round %d: the copy differs from the source", round)
					require.NoError(t, os.Remove(dstPath))
				}
			}
			t.Logf("%d rounds killed, %d finished first", killed, finished)
			require.Positive(t, killed)

			// The parent resumes what the last child left.
			ctx := t.Context()
			src := newTestShare(t, "src", srcDir)
			if mode == "share" {
				err = Copy(ctx, src, "disk.vhd", m, newTestShare(t, "dst", dstDir), "disk.vhd", nil)
			} else {
				err = CopyToFile(ctx, src, "disk.vhd", m, dstPath, nil)
			}
			require.NoError(t, err)
			got, err := os.ReadFile(dstPath)
			require.NoError(t, err)
			require.True(t, bytes.Equal(got, data), "the resumed copy differs from the source")
		})
	}
}

// watchWhole polls name until stop is closed and fails if it is ever
// visible with other content than want.
func watchWhole(stop <-chan struct{}, name string, want []byte) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		if fi, err := os.Stat(name); err == nil {
			if fi.Size() != int64(len(want)) {
				return fmt.Errorf("%s visible with %d bytes, want %d", name, fi.Size(), len(want))
			}
			got, err := os.ReadFile(name)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if err == nil && !bytes.Equal(got, want) {
				return fmt.Errorf("%s visible with other content than the source", name)
			}
			if err == nil {
				return nil // whole; the child has committed
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// lockedBuffer is a bytes.Buffer a child process writes to while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
