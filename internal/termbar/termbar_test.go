package termbar

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestHuman(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB", 2 << 40: "2.0 TiB",
	} {
		if got := Human(n); got != want {
			t.Errorf("Human(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBarOnlyOnTerminal(t *testing.T) {
	var buf bytes.Buffer
	if New(&buf) != nil {
		t.Error("a bar on a buffer")
	}
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if New(f) != nil {
		t.Error("a bar on a regular file")
	}
	var nilBar *Bar
	nilBar.Draw(1, 2, "") // no panic

	b := &Bar{w: &buf}
	b.Draw(50, 100, " x")
	b.Draw(60, 100, " y") // within 100 ms: skipped
	b.Draw(100, 100, "")  // done: always drawn
	out := buf.String()
	if !strings.Contains(out, " 50.0%") || strings.Contains(out, " 60.0%") || !strings.HasSuffix(out, "100.0% 100 B of 100 B\n") {
		t.Errorf("bar output %q", out)
	}
}
