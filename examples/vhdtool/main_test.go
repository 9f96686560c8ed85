package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func vhdtool(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVhdtool(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "src.raw")
	data := make([]byte, 3<<20)
	copy(data[1<<20:], bytes.Repeat([]byte("vmmkit"), 1000))
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a.vhd"), filepath.Join(dir, "b.vhdx")
	steps := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"convert", "-q", raw, a}, 0, "converted"},
		{[]string{"convert", "-q", "-O", "vhdx", "-block-size", "1M", a, b}, 0, "converted"},
		{[]string{"info", a}, 0, "dynamic VHD"},
		{[]string{"diff", a, b}, 0, "0 ranges"},
		{[]string{"create", filepath.Join(dir, "c.vhdx"), "-parent", b}, 1, ""}, // flags go first
		{[]string{"create", "-parent", b, filepath.Join(dir, "c.vhdx")}, 0, "differencing VHDX"},
		{[]string{"create", filepath.Join(dir, "e.vhd"), "3M"}, 0, "dynamic VHD"},
		{[]string{"diff", a, filepath.Join(dir, "e.vhd")}, 2, "1048576+6144\n1 ranges, 6.0 KiB differ"},
		{[]string{"info", filepath.Join(dir, "missing.vhd")}, 1, ""},
		{[]string{"check", b}, 0, "No errors were found."},
		{[]string{"create", "-parent", a, filepath.Join(dir, "m.vhd")}, 0, "differencing VHD"},
		{[]string{"merge", filepath.Join(dir, "m.vhd")}, 0, "merged"},
		{[]string{"flatten", filepath.Join(dir, "m.vhd")}, 0, "flattened"},
		{[]string{"merge", a}, 1, ""},
		{[]string{"compact", a}, 0, "compacted"},
		{[]string{"resize", a, "8M"}, 0, "resized"},
		{[]string{"resize", a, "1M"}, 1, ""}, // data past 1 MiB
		{[]string{"compact", filepath.Join(dir, "missing.vhd")}, 1, ""},
		{[]string{"check", filepath.Join(dir, "missing.vhd")}, 1, ""},
		{[]string{"frobnicate"}, 1, ""},
	}
	for _, s := range steps {
		code, out, errOut := vhdtool(t, s.args...)
		if code != s.wantCode || !strings.Contains(out, s.wantOut) {
			t.Errorf("vhdtool %s: exit %d, output %q, errors %q; want exit %d and %q", strings.Join(s.args, " "), code, out, errOut, s.wantCode, s.wantOut)
		}
	}

	// A VHD whose trailing footer was lost: check finds it (exit 2),
	// check -repair mends it.
	fi, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(a, fi.Size()-512); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := vhdtool(t, "check", a); code != 2 || !strings.Contains(out, "(repairable)") {
		t.Errorf("check of a damaged image: exit %d, %q", code, out)
	}
	if code, out, _ := vhdtool(t, "check", "-repair", a); code != 0 || !strings.Contains(out, "(repaired)") {
		t.Errorf("check -repair: exit %d, %q", code, out)
	}
	if code, out, _ := vhdtool(t, "check", a); code != 0 {
		t.Errorf("check after repair: exit %d, %q", code, out)
	}

	code, out, _ := vhdtool(t, "info", "-json", filepath.Join(dir, "c.vhdx"))
	var info infoOut
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil {
		t.Fatalf("info -json: exit %d, %q", code, out)
	}
	if info.Type != "differencing" || info.Parent == nil || info.Parent.Format != "VHDX" || info.VirtualSize != 3<<20 {
		t.Errorf("info -json = %+v", info)
	}
}
