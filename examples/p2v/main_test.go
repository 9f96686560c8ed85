package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vmmkit/vmmkit/internal/testenv"
)

func p2vCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestP2V(t *testing.T) {
	mkfs := testenv.Tool(t, "VMM_TEST_MKFS_EXT4", "mkfs.ext4")
	debugfs := testenv.Tool(t, "VMM_TEST_DEBUGFS", "debugfs")
	dir := t.TempDir()
	content := filepath.Join(dir, "content")
	if err := os.Mkdir(content, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(content, "a"), bytes.Repeat([]byte("vmmkit p2v "), 300000), 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "disk.raw")
	if out, err := exec.Command(mkfs, "-q", "-F", "-d", content, src, "32M").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	img := filepath.Join(dir, "disk.vhdx")

	code, out, errOut := p2vCmd(t, "-src", src, "-dst", img, "-json", "-verify")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var s summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if s.Mode != "full" || s.Size != 32<<20 || s.Read != s.Used || s.Used >= s.Size/2 || s.Verified == nil || !*s.Verified {
		t.Errorf("summary %+v", s)
	}
	if len(s.Partitions) != 1 || s.Partitions[0].FS != "ext4" {
		t.Errorf("partitions %+v", s.Partitions)
	}

	// Change the file system, then capture the change as a child.
	if out, err := exec.Command(debugfs, "-w", "-R", "write "+filepath.Join(content, "a")+" b", src).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	child := filepath.Join(dir, "disk-2.vhdx")
	code, out, errOut = p2vCmd(t, "-src", src, "-dst", child, "-previous", img, "-verify")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"(child)", "changed chunks", "verified: true", "manifest " + child + ".manifest"} {
		if !bytes.Contains([]byte(out), []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// In place, then nothing left to write.
	code, _, errOut = p2vCmd(t, "-src", src, "-previous", img, "-in-place")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	code, out, _ = p2vCmd(t, "-src", src, "-previous", img, "-in-place", "-json")
	if err := json.Unmarshal([]byte(out), &s); code != 0 || err != nil || s.Written != 0 || s.ChangedChunks != 0 {
		t.Errorf("second in-place pass: exit %d, %+v", code, s)
	}

	// Errors: exit 1 with a message.
	for _, args := range [][]string{
		{},
		{"-src", filepath.Join(dir, "missing"), "-dst", filepath.Join(dir, "x.vhdx")},
		{"-src", src, "-dst", img}, // exists
		{"-src", src, "-dst", filepath.Join(dir, "y.vhdx"), "-format", "qcow2"},
	} {
		if code, _, errOut := p2vCmd(t, args...); code != 1 || errOut == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
}
