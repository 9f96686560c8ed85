package p2v

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"os/exec"
	"testing"
	"time"
)

func TestExtHunt(t *testing.T) {
	img := filepath.Join(t.TempDir(), "s.img")
	os.WriteFile(img, make([]byte, 256<<10), 0o644)
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-E", "nodiscard", "-t", "ext2", "-b", "1024", "-N", "16", "-g", "256", img).CombinedOutput()
	if err != nil { t.Fatal(err, string(out)) }
	seed, _ := os.ReadFile(img)
	r := rand.New(rand.NewPCG(1, 1))
	for it := 0; it < 200000; it++ {
		b := bytes.Clone(seed)
		for k := 0; k < 1+r.IntN(4); k++ {
			off := 1024 + r.IntN(2048)
			b[off] = byte(r.Uint32())
		}
		start := time.Now()
		parseExt(bytes.NewReader(b), int64(len(b)))
		if d := time.Since(start); d > 200*time.Millisecond {
			os.WriteFile("/tmp/slow.bin", b, 0o644)
			t.Fatalf("slow %v at iteration %d", d, it)
		}
	}
}
