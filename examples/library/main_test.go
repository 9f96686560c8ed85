package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runLibrary(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func decodeLines(t *testing.T, out string) map[string]jsonObject {
	t.Helper()
	objs := map[string]jsonObject{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var o jsonObject
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		objs[o.Name] = o
	}
	return objs
}

// TestDemo runs the command with no set-up, as the README shows it.
func TestDemo(t *testing.T) {
	code, out, errOut := runLibrary(t)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"win2003.vhd", "hq:disks/win2003.vhd at hq", "branch:disks/win2003.vhd at branch (nearest to branch)",
		"differencing VHD", `volume "W2K3_SP2"`, "PROBLEM: iso:", "2 vCPU", "win2003-std", "9 objects (1 with problems)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut = runLibrary(t, "-json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	objs := decodeLines(t, out)
	if len(objs) != 9 {
		t.Errorf("got %d objects, want 9:\n%s", len(objs), out)
	}
	disk := objs["win2003.vhd"]
	if disk.Kind != "vhd" || len(disk.Replicas) != 2 || disk.Problem != "" || !strings.HasPrefix(disk.Hash, "blake3:") || disk.Size <= 0 {
		t.Errorf("win2003.vhd: got %+v", disk)
	}
	if p := objs["broken.iso"].Problem; !strings.Contains(p, "truncated") {
		t.Errorf("broken.iso: problem %q, want it truncated", p)
	}
	for name, kind := range map[string]string{"data.vhdx": "vhdx", "small": "hardware-profile", "win2003-std": "template", "join.ps1": "script"} {
		if string(objs[name].Kind) != kind {
			t.Errorf("%s: kind %q, want %q", name, objs[name].Kind, kind)
		}
	}
}

func TestSharesAndReplicate(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := bytes.Repeat([]byte("disk"), 1<<20)
	if err := os.WriteFile(filepath.Join(a, "img.raw"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, "bad.json"), []byte(`{"kind": "template"`), 0o644); err != nil {
		t.Fatal(err)
	}
	shares := a + "@east," + b + "@west"

	code, out, errOut := runLibrary(t, "-share", shares, "-json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	objs := decodeLines(t, out)
	if got := objs["img.raw"]; got.Kind != "raw" || got.Size != int64(len(data)) || len(got.Replicas) != 1 || got.Replicas[0] != (jsonReplica{"a", "img.raw"}) {
		t.Errorf("img.raw: got %+v", got)
	}
	if !strings.Contains(objs["bad.json"].Problem, "invalid JSON") {
		t.Errorf("bad.json: got %+v", objs["bad.json"])
	}

	code, out, errOut = runLibrary(t, "-share", shares, "-replicate", "img.raw", "-to", "b")
	if code != 0 || !strings.Contains(out, "replicated img.raw to b:img.raw") {
		t.Fatalf("replicate: exit %d, output %q, errors %q", code, out, errOut)
	}
	got, err := os.ReadFile(filepath.Join(b, "img.raw"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copy: %d bytes, %v", len(got), err)
	}
	code, out, _ = runLibrary(t, "-share", shares, "-json")
	if code != 0 || len(decodeLines(t, out)["img.raw"].Replicas) != 2 {
		t.Errorf("after replicate: exit %d, %s", code, out)
	}

	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"unknown object", []string{"-share", shares, "-replicate", "nope", "-to", "b"}, 1},
		{"unknown share", []string{"-share", shares, "-replicate", "img.raw", "-to", "c"}, 1},
		{"missing directory", []string{"-share", filepath.Join(root, "missing")}, 1},
		{"-to without -replicate", []string{"-share", shares, "-to", "b"}, 2},
		{"bad cost", []string{"-share", shares, "-cost", "east=3"}, 2},
		{"stray argument", []string{"-share", shares, "extra"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, out, errOut := runLibrary(t, tc.args...); code != tc.want {
				t.Errorf("exit %d, want %d; output %q, errors %q", code, tc.want, out, errOut)
			}
		})
	}
}
