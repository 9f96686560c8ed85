package history

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"iter"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PlanetLab trace geometry: one sample every 5 minutes for one day.
const (
	PlanetLabSamples  = 288
	PlanetLabInterval = 5 * time.Minute
)

// ReadPlanetLab reads one VM's trace of the PlanetLab workload that
// CloudSim ships (CoMon, March–April 2011): a plain-text file of exactly 288
// lines, one whole number per line, the VM's CPU use over 5 minutes in
// percent of its allocated CPU (0–100). id names the VM (the file name) and
// appears in errors. Blank space around a number and "\r\n" line ends are
// accepted.
//
// The Series has ID id, Interval 5 minutes, CPU set (288 samples) and
// every other resource nil; Start and CPUCapacity are zero (the files
// carry neither). Fewer or more than 288 lines, a line that is not a whole
// number, or a value below 0 or above 100 is a *ParseError naming the file
// and the line.
func ReadPlanetLab(r io.Reader, id string) (Series, error) {
	s := Series{ID: id, Interval: PlanetLabInterval, CPU: make([]float64, 0, PlanetLabSamples)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxLine)
	line := 0
	for sc.Scan() {
		line++
		if line > PlanetLabSamples {
			return s, &ParseError{Path: id, Line: line, Err: fmt.Errorf("more than %d lines", PlanetLabSamples)}
		}
		text := strings.TrimSpace(sc.Text())
		v, err := strconv.Atoi(text)
		switch {
		case err != nil:
			return s, &ParseError{Path: id, Line: line, Err: fmt.Errorf("%q is not a whole number", truncate(text))}
		case v < 0 || v > 100:
			return s, &ParseError{Path: id, Line: line, Err: fmt.Errorf("%d is not a percentage from 0 to 100", v)}
		}
		s.CPU = append(s.CPU, float64(v))
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("line longer than %d bytes", maxLine)
		}
		return s, &ParseError{Path: id, Line: line + 1, Err: err}
	}
	if line < PlanetLabSamples {
		return s, &ParseError{Path: id, Line: line, Err: fmt.Errorf("%d lines, want %d", line, PlanetLabSamples)}
	}
	return s, nil
}

// truncate shortens a field quoted in an error.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// ReadPlanetLabTar reads the regular files of a tar archive of PlanetLab
// traces, gzip-compressed (as the published daily .tar.gz) or not, each as
// one VM's trace (see ReadPlanetLab) with the file's base name as ID. Entries that
// are not regular files, files whose base name starts with "." (hidden
// files, macOS "._" AppleDouble files) and anything under a "__MACOSX"
// folder are skipped. The traces come in file-name
// order (by base name, then by path), whatever the archive's order, so that
// the blocks of VM types CloudSim assigns by listing order are
// reproducible. When a file's folder is named after its day ("20110303/…"),
// Start is that day at 00:00 UTC.
//
// A file that cannot be parsed yields its Series (ID set) with the error,
// and the sequence goes on if the caller keeps iterating; an archive that
// cannot be read yields one error and ends, before any trace.
func ReadPlanetLabTar(r io.Reader) iter.Seq2[Series, error] {
	return func(yield func(Series, error) bool) {
		type entry struct {
			name string
			s    Series
			err  error
		}
		var all []entry
		for e, err := range tarFiles(r) {
			if err != nil {
				yield(Series{}, err)
				return
			}
			base := path.Base(e.Name)
			s, err := ReadPlanetLab(e.Body, base)
			if err != nil {
				var pe *ParseError
				if errors.As(err, &pe) {
					pe.Path = e.Name
				}
			}
			if day, err := time.Parse("20060102", path.Base(path.Dir(e.Name))); err == nil {
				s.Start = day
			}
			all = append(all, entry{e.Name, s, err})
		}
		slices.SortFunc(all, func(a, b entry) int {
			return cmp.Or(strings.Compare(a.s.ID, b.s.ID), strings.Compare(a.name, b.name))
		})
		for _, e := range all {
			if !yield(e.s, e.err) {
				return
			}
		}
	}
}
