// Package termbar draws progress bars for the example commands on a
// terminal, and stays silent when output goes to a file or pipe.
package termbar

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// IsTerminal reports whether w is a character device, such as a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// A Bar redraws one line of progress on a terminal, at most ten times a
// second and always when the work is done.
type Bar struct {
	w    io.Writer
	last time.Time
}

// New returns a bar on w, or nil when w is not a terminal. A nil *Bar's
// methods do nothing.
func New(w io.Writer) *Bar {
	if !IsTerminal(w) {
		return nil
	}
	return &Bar{w: w}
}

// Draw shows done of total, followed by extra.
func (b *Bar) Draw(done, total int64, extra string) {
	if b == nil {
		return
	}
	now := time.Now()
	if now.Sub(b.last) < 100*time.Millisecond && done != total {
		return
	}
	b.last = now
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	n := min(20, max(0, int(pct/5)))
	fmt.Fprintf(b.w, "\r[%s%s] %5.1f%% %s of %s%s", strings.Repeat("#", n), strings.Repeat(".", 20-n), pct, Human(done), Human(total), extra)
	if done == total {
		fmt.Fprintln(b.w)
	}
}

// Human formats a byte count with a binary unit: 512 B, 1.5 MiB, 2.0 GiB.
func Human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
