package history

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A Sample is one row of a Bitbrains trace: a VM's use over the interval
// that ends (or starts: the trace does not say) at Time. KB is the trace's
// unit; it is taken to mean 1024 bytes.
type Sample struct {
	// Line is the sample's line in its file (1-based; the header is line
	// 1), for messages about it.
	Line                int
	Time                time.Time // UTC, whole seconds
	CPUCores            int       // virtual cores provisioned
	CPUCapacityMHz      float64   // cores × per-core clock
	CPUUsageMHz         float64   // average CPU used over the interval
	CPUUsagePercent     float64   // CPUUsageMHz as a percentage of CPUCapacityMHz
	MemoryProvisionedKB float64   // memory granted to the VM
	MemoryUsageKB       float64   // memory actively used
	DiskReadKBps        float64
	DiskWriteKBps       float64
	NetRxKBps           float64
	NetTxKBps           float64
}

// A Trace is the samples of one VM.
type Trace struct {
	// ID names the VM: the trace's file name without ".csv" ("27" for
	// 27.csv).
	ID string
	// Path is the file the trace was read from (its name in the archive
	// for ReadBitbrainsTar), for messages; "" when unknown.
	Path    string
	Samples []Sample // in file order
}

// The columns of a Bitbrains CSV file, in order.
var bitbrainsColumns = [...]string{
	"timestamp",
	"CPU cores",
	"CPU capacity provisioned [MHZ]",
	"CPU usage [MHZ]",
	"CPU usage [%]",
	"memory capacity provisioned [KB]",
	"memory usage [KB]",
	"disk read throughput [KB/s]",
	"disk write throughput [KB/s]",
	"network received throughput [KB/s]",
	"network transmitted throughput [KB/s]",
}

// maxLine bounds a line of a trace; real lines are about 130 bytes.
const maxLine = 64 << 10

// A ParseError reports a line of a trace that cannot be read.
type ParseError struct {
	Path   string // the file, when known
	Line   int    // 1-based; the header is line 1
	Column int    // 1-based; 0 when the line as a whole is at fault
	Err    error
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString("history: ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "line %d", e.Line)
	if e.Column > 0 {
		fmt.Fprintf(&b, ", column %d", e.Column)
		if e.Column <= len(bitbrainsColumns) {
			fmt.Fprintf(&b, " (%s)", bitbrainsColumns[e.Column-1])
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// ReadBitbrains reads one VM's trace in the format of the Bitbrains
// traces (GWA-T-12): fields separated by ";" (the published files put a tab
// after each), blank space around a field ignored, one optional header
// line, then one row per sample with 11 columns: timestamp in Unix seconds
// (the header says ms; the values are seconds), CPU cores, CPU capacity
// provisioned (MHz), CPU usage (MHz), CPU usage (%), memory provisioned
// (KB), memory usage (KB), disk read and write (KB/s), network received
// and transmitted (KB/s). Blank lines are skipped; "\r\n" line ends are
// accepted.
//
// The header is recognised by its column names, not guessed: the first
// line that is not blank is a row when its first field is a number, and
// otherwise must be the header, whose first name starts with "Timestamp"
// and whose other names are those of the published files ("CPU cores",
// "CPU capacity provisioned [MHZ]", … "Network transmitted throughput
// [KB/s]"), compared regardless of case. A first line that is neither, or
// a header with other names or another number of columns, is an error.
//
// It streams: one sample per row, in file order, with its line. A row with
// the wrong number of columns, a field that is not a number (the timestamp
// and the cores must be whole), or a value that is negative, NaN or
// infinite ends the sequence with a *ParseError giving the line and
// column; so does a failing reader or a line longer than 64 KiB.
//
// Rows are not checked against each other's columns here (the published
// traces have rows with CPU use above the capacity): Sample.Check does
// that, and BitbrainsSeries skips or refuses such rows.
func ReadBitbrains(r io.Reader) iter.Seq2[Sample, error] {
	return func(yield func(Sample, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 4096), maxLine)
		line := 0
		first := true
		for sc.Scan() {
			line++
			text := sc.Text()
			if strings.TrimSpace(text) == "" {
				continue
			}
			if first {
				first = false
				isHeader, col, err := bitbrainsHeader(text)
				if err != nil {
					yield(Sample{}, &ParseError{Line: line, Column: col, Err: err})
					return
				}
				if isHeader {
					continue
				}
			}
			s, col, err := parseBitbrainsRow(text)
			if err != nil {
				yield(Sample{}, &ParseError{Line: line, Column: col, Err: err})
				return
			}
			s.Line = line
			if !yield(s, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				err = fmt.Errorf("line longer than %d bytes", maxLine)
			}
			yield(Sample{}, &ParseError{Line: line + 1, Err: err})
		}
	}
}

// bitbrainsHeader tells the first line of a trace: a row (false) when
// its first field is a number, the header (true) when its fields are the
// header's names; otherwise an error with the 1-based column at fault (0
// for the line as a whole).
func bitbrainsHeader(line string) (bool, int, error) {
	fields := strings.Split(line, ";")
	first := strings.TrimSpace(fields[0])
	if _, err := strconv.ParseFloat(first, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		return false, 0, nil
	}
	if !strings.HasPrefix(strings.ToLower(first), "timestamp") {
		return false, 1, fmt.Errorf("%q is neither a timestamp nor the header's first column %q", truncate(first), "Timestamp [ms]")
	}
	if len(fields) != len(bitbrainsColumns) {
		return false, 0, fmt.Errorf("header has %d columns, want %d", len(fields), len(bitbrainsColumns))
	}
	for i := 1; i < len(fields); i++ {
		if name := strings.TrimSpace(fields[i]); !strings.EqualFold(name, bitbrainsColumns[i]) {
			return false, i + 1, fmt.Errorf("header names the column %q", truncate(name))
		}
	}
	return true, 0, nil
}

// parseBitbrainsRow parses one row; on error it returns the 1-based column
// at fault (0 for the whole row).
func parseBitbrainsRow(text string) (Sample, int, error) {
	var f [len(bitbrainsColumns)]string
	rest := text
	n := 0
	for {
		field, after, more := strings.Cut(rest, ";")
		if n == len(f) {
			return Sample{}, n + 1, fmt.Errorf("more than %d columns", len(f))
		}
		f[n] = strings.TrimSpace(field)
		n++
		if !more {
			break
		}
		rest = after
	}
	if n < len(f) {
		return Sample{}, n + 1, fmt.Errorf("%d columns, want %d", n, len(f))
	}
	var s Sample
	ts, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return Sample{}, 1, fmt.Errorf("%q is not a whole number of seconds", f[0])
	}
	if ts < 0 {
		return Sample{}, 1, fmt.Errorf("negative timestamp %d", ts)
	}
	if ts > 1e11 { // past the year 5138: milliseconds, not seconds
		return Sample{}, 1, fmt.Errorf("timestamp %d looks like milliseconds; the trace counts seconds", ts)
	}
	s.Time = time.Unix(ts, 0).UTC()
	cores, err := strconv.Atoi(f[1])
	if err != nil {
		return Sample{}, 2, fmt.Errorf("%q is not a whole number", f[1])
	}
	if cores < 0 {
		return Sample{}, 2, fmt.Errorf("negative value %d", cores)
	}
	s.CPUCores = cores
	dst := [...]*float64{
		&s.CPUCapacityMHz, &s.CPUUsageMHz, &s.CPUUsagePercent,
		&s.MemoryProvisionedKB, &s.MemoryUsageKB,
		&s.DiskReadKBps, &s.DiskWriteKBps, &s.NetRxKBps, &s.NetTxKBps,
	}
	for i, p := range dst {
		col := i + 3
		x, err := parseNumber(f[col-1])
		if err != nil {
			return Sample{}, col, err
		}
		*p = x
	}
	return s, 0, nil
}

// ReadBitbrainsFile reads a whole trace file (see ReadBitbrains); a
// *ParseError names the file.
func ReadBitbrainsFile(name string) ([]Sample, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return collect(f, name)
}

func collect(r io.Reader, name string) ([]Sample, error) {
	var out []Sample
	for s, err := range ReadBitbrains(r) {
		if err != nil {
			var pe *ParseError
			if errors.As(err, &pe) {
				pe.Path = name
			}
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

// ReadBitbrainsDir reads every "*.csv" file in dir as one VM's trace,
// ordered by ID: numeric IDs by value first ("2" before "10"), then the
// others by name. A file that cannot be read yields its Trace (ID set,
// samples up to the error) with the error, and the sequence goes on with
// the next file if the caller keeps iterating; a directory that cannot be
// listed yields one error.
func ReadBitbrainsDir(dir string) iter.Seq2[Trace, error] {
	return func(yield func(Trace, error) bool) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			yield(Trace{}, err)
			return
		}
		var ids []string
		for _, e := range entries {
			if id, ok := strings.CutSuffix(e.Name(), ".csv"); ok && id != "" && e.Type().IsRegular() {
				ids = append(ids, id)
			}
		}
		SortIDs(ids)
		for _, id := range ids {
			name := filepath.Join(dir, id+".csv")
			samples, err := ReadBitbrainsFile(name)
			if !yield(Trace{ID: id, Path: name, Samples: samples}, err) {
				return
			}
		}
	}
}

// ReadBitbrainsTar reads the "*.csv" regular files of a tar archive,
// gzip-compressed (as the published .tar.gz) or not, in archive order; the
// ID is the file's base name without ".csv". Folders, links and other
// entries that are not regular files are skipped, and so are files whose
// base name starts with "." (the "._27.csv" AppleDouble files macOS's tar
// adds) and anything under a "__MACOSX" folder. A file that cannot be parsed
// yields its Trace with the error and the sequence goes on if the caller
// keeps iterating; an archive that cannot be read yields its error and
// ends.
func ReadBitbrainsTar(r io.Reader) iter.Seq2[Trace, error] {
	return func(yield func(Trace, error) bool) {
		for e, err := range tarFiles(r) {
			if err != nil {
				yield(Trace{}, err)
				return
			}
			id, ok := strings.CutSuffix(path.Base(e.Name), ".csv")
			if !ok || id == "" {
				continue
			}
			samples, err := collect(e.Body, e.Name)
			if !yield(Trace{ID: id, Path: e.Name, Samples: samples}, err) {
				return
			}
		}
	}
}

// SortIDs sorts trace IDs as ReadBitbrainsDir orders them: numeric IDs by
// value first, then the others by name.
func SortIDs(ids []string) {
	slices.SortFunc(ids, CompareIDs)
}

// CompareIDs orders two trace IDs: numeric IDs by value first ("2" before
// "10"), then the others by name.
func CompareIDs(a, b string) int {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	switch {
	case errA == nil && errB == nil:
		if c := cmp.Compare(x, y); c != 0 {
			return c
		}
	case errA == nil:
		return -1
	case errB == nil:
		return 1
	}
	return strings.Compare(a, b)
}
