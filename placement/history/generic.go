package history

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The resource columns of the generic CSV format (see ReadCSV), in the
// order of the Series fields they fill.
var genericColumns = [...]string{"cpu_percent", "memory_mib", "disk_iops", "disk_mbps", "network_mbps"}

// MaxSeriesSamples is the most samples a Series built by this package
// (ReadCSV, ReadPerfmon, Resample, BitbrainsSeries) may have, gaps
// included: 4 Mi samples, eight years at one minute, 32 MiB per resource.
// A longer result is an error, so that a file of a few far-apart
// timestamps (two rows of a machine one second apart and a third ten years
// later) cannot make a reader allocate without bound.
const MaxSeriesSamples = 1 << 22

// maxSlots is MaxSeriesSamples, a variable so that fuzz tests can lower
// it.
var maxSlots = MaxSeriesSamples

// ReadCSV reads the use of many machines from a generic CSV file and
// returns one Series per machine, ordered by ID as CompareIDs orders them.
//
// The format is RFC 4180 CSV (fields may be quoted; "\r\n" line ends are
// accepted; blank lines are skipped). The first line is a header naming
// the columns; the columns may come in any order, "time" and "id" are
// required, and the others are optional:
//
//	time          RFC 3339 (2026-03-01T10:00:00Z, 2026-03-01T11:00:00+01:00)
//	              or whole Unix seconds (1772359200)
//	id            the machine; any non-empty string
//	cpu_percent   CPU used, 0–100
//	memory_mib    memory used, MiB
//	disk_iops     disk I/O operations per second
//	disk_mbps     disk throughput, MB/s
//	network_mbps  network throughput, Mb/s
//
// Any other column name, or a name given twice, is an error. A resource
// whose column is absent has a nil slice in every Series; an empty (or
// blank) field is a missing sample (NaN). Space around a field is ignored.
//
// Rows of different machines may be interleaved and need not be in time
// order. Each machine's samples are put on a fixed grid: Start is its
// first time (in UTC), Interval the median spacing between its successive
// times (the lower median for an even count), and every spacing must be a
// whole multiple of that interval; the slots between (a gap) are NaN. A
// spacing that is not a multiple ("mixed intervals"), two rows with the
// same id and time, or a machine with a single row (its interval cannot
// be inferred) is an error naming the machine. So is a series longer than
// MaxSeriesSamples (a gap counts as the samples it misses), so that memory
// stays bounded whatever the timestamps.
//
// Every error is a *ParseError with the line (1-based, the header is
// line 1); an error about a field names its column in the message.
// Values that are not numbers, negative, NaN or infinite are rejected, as
// is cpu_percent above 100.
func ReadCSV(r io.Reader) ([]Series, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err == io.EOF {
		return nil, &ParseError{Line: 1, Err: errors.New("empty file: no header")}
	}
	if err != nil {
		return nil, csvError(err)
	}
	headerLine, _ := cr.FieldPos(0)
	timeCol, idCol := -1, -1
	resCol := [len(genericColumns)]int{-1, -1, -1, -1, -1}
	seen := map[string]int{}
	for i, name := range header {
		name = strings.TrimSpace(name)
		if i == 0 {
			name = strings.TrimPrefix(name, "\ufeff")
		}
		if j, dup := seen[name]; dup {
			return nil, fieldError(headerLine, i, name, fmt.Errorf("column named twice (also column %d)", j+1))
		}
		seen[name] = i
		switch name {
		case "time":
			timeCol = i
		case "id":
			idCol = i
		default:
			k := slices.Index(genericColumns[:], name)
			if k < 0 {
				return nil, fieldError(headerLine, i, name, fmt.Errorf("unknown column; want time, id, %s", strings.Join(genericColumns[:], ", ")))
			}
			resCol[k] = i
		}
	}
	if timeCol < 0 || idCol < 0 {
		return nil, &ParseError{Line: headerLine, Err: errors.New(`header lacks a "time" or "id" column`)}
	}

	type row struct {
		t    time.Time
		line int
		v    [len(genericColumns)]float64
	}
	machines := map[string][]row{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvError(err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			return nil, &ParseError{Line: line, Err: fmt.Errorf("%d fields, want %d as in the header", len(rec), len(header))}
		}
		id := strings.TrimSpace(rec[idCol])
		if id == "" {
			return nil, fieldError(line, idCol, "id", errors.New("empty id"))
		}
		t, err := parseGenericTime(strings.TrimSpace(rec[timeCol]))
		if err != nil {
			return nil, fieldError(line, timeCol, "time", err)
		}
		rw := row{t: t, line: line}
		for k, c := range resCol {
			rw.v[k] = math.NaN()
			if c < 0 {
				continue
			}
			x, err := parseValue(rec[c])
			if err == nil && k == 0 && x > 100 {
				err = fmt.Errorf("CPU %s%% above 100%%", strings.TrimSpace(rec[c]))
			}
			if err != nil {
				return nil, fieldError(line, c, genericColumns[k], err)
			}
			rw.v[k] = x
		}
		machines[id] = append(machines[id], rw)
	}

	ids := make([]string, 0, len(machines))
	for id := range machines {
		ids = append(ids, id)
	}
	SortIDs(ids)
	out := make([]Series, 0, len(ids))
	for _, id := range ids {
		rows := machines[id]
		slices.SortStableFunc(rows, func(a, b row) int { return a.t.Compare(b.t) })
		times := make([]time.Time, len(rows))
		for i, rw := range rows {
			times[i] = rw.t
			if i > 0 && rw.t.Equal(rows[i-1].t) {
				return nil, &ParseError{Line: rw.line, Err: fmt.Errorf("machine %q: time %s given twice (also line %d)", id, rw.t.Format(time.RFC3339Nano), rows[i-1].line)}
			}
		}
		if len(rows) < 2 {
			return nil, &ParseError{Line: rows[0].line, Err: fmt.Errorf("machine %q has a single sample: its interval cannot be inferred", id)}
		}
		iv, slots, bad, err := grid(times, false)
		if err != nil {
			line := rows[0].line
			if bad >= 0 {
				line = rows[bad].line
			}
			return nil, &ParseError{Line: line, Err: fmt.Errorf("machine %q: %w", id, err)}
		}
		s := Series{ID: id, Start: times[0], Interval: iv}
		n := slots[len(slots)-1] + 1
		dst := [...]*[]float64{&s.CPU, &s.Memory, &s.DiskIOPS, &s.DiskMBps, &s.Network}
		for k, c := range resCol {
			if c < 0 {
				continue
			}
			x := nanSlice(n)
			for i, rw := range rows {
				x[slots[i]] = rw.v[k]
			}
			*dst[k] = x
		}
		out = append(out, s)
	}
	return out, nil
}

// parseGenericTime parses whole Unix seconds or RFC 3339; the result is
// in UTC.
func parseGenericTime(f string) (time.Time, error) {
	if f == "" {
		return time.Time{}, errors.New("empty time")
	}
	if strings.TrimLeft(f, "-0123456789") == "" {
		sec, err := strconv.ParseInt(f, 10, 64)
		// Bound to years 0–9999 so that the time formats and compares
		// without overflow.
		if err != nil || sec < -62167219200 || sec > 253402300799 {
			return time.Time{}, fmt.Errorf("%q is not a Unix time in seconds of years 0–9999", f)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, f)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor Unix seconds", f)
	}
	return t.UTC(), nil
}

// parseValue parses a sample of the CSV readers: blank is missing (NaN);
// otherwise see parseNumber.
func parseValue(f string) (float64, error) {
	if strings.TrimSpace(f) == "" {
		return math.NaN(), nil
	}
	return parseNumber(f)
}

// errNegative marks the error of parseNumber for a negative number, which
// some readers count and skip instead of failing.
var errNegative = errors.New("negative value")

// parseNumber parses a measured value, for every reader: a number (space
// around it ignored) that is finite and not negative; an error says which
// of these it is not, and wraps errNegative for a negative number. A
// negative zero becomes zero.
func parseNumber(f string) (float64, error) {
	f = strings.TrimSpace(f)
	x, err := strconv.ParseFloat(f, 64)
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange):
		return 0, fmt.Errorf("%q is not a number", truncate(f))
	case math.IsNaN(x) || math.IsInf(x, 0):
		return 0, fmt.Errorf("%q is not a finite number", truncate(f))
	case x < 0:
		return 0, fmt.Errorf("%w %s", errNegative, truncate(f))
	}
	return x + 0, nil // no negative zero
}

// fieldError reports a bad field; col is 0-based. The column goes in the
// message, not in ParseError.Column, whose text names Bitbrains columns.
func fieldError(line, col int, name string, err error) *ParseError {
	return &ParseError{Line: line, Err: fmt.Errorf("column %d (%s): %w", col+1, name, err)}
}

// csvError turns an error of encoding/csv into a *ParseError.
func csvError(err error) error {
	var ce *csv.ParseError
	if errors.As(err, &ce) {
		return &ParseError{Line: ce.Line, Err: fmt.Errorf("column %d (byte): %w", ce.Column, ce.Err)}
	}
	return &ParseError{Err: err}
}

func nanSlice(n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = math.NaN()
	}
	return x
}

// grid puts strictly increasing times (at least two) on a fixed grid. The
// interval is the lower median of the spacings (when jitter is allowed,
// rounded to the second, or to the millisecond if under a second); slots[i] is the grid index of
// times[i], slots[0] = 0. Without jitter every spacing must be an exact
// multiple of the interval; with jitter it must be within a quarter
// interval of a non-zero multiple. On error bad is the index of the time
// at fault, or -1.
func grid(times []time.Time, jitter bool) (iv time.Duration, slots []int, bad int, err error) {
	d := make([]time.Duration, len(times)-1)
	for i := range d {
		d[i] = times[i+1].Sub(times[i])
		if d[i] <= 0 || d[i] == math.MaxInt64 {
			return 0, nil, i + 1, fmt.Errorf("spacing %v out of range", d[i])
		}
	}
	sorted := slices.Clone(d)
	slices.Sort(sorted)
	iv = sorted[(len(sorted)-1)/2]
	if jitter {
		// typeperf and relog sample at whole seconds; their timestamps
		// jitter by milliseconds.
		if iv >= time.Second {
			iv = iv.Round(time.Second)
		} else {
			iv = iv.Round(time.Millisecond)
		}
		if iv <= 0 {
			return 0, nil, -1, errors.New("samples less than a millisecond apart")
		}
	}
	slots = make([]int, len(times))
	for i, di := range d {
		k := di / iv
		rem := di % iv
		if jitter && rem*2 >= iv {
			k, rem = k+1, rem-iv
		}
		if !jitter && rem != 0 || jitter && (k == 0 || rem.Abs()*4 > iv) {
			return 0, nil, i + 1, fmt.Errorf("spacing %v is not a multiple of the interval %v (mixed intervals)", di, iv)
		}
		if k >= time.Duration(maxSlots-slots[i]) {
			return 0, nil, i + 1, fmt.Errorf("a gap of %v at an interval of %v: the series would be longer than %d samples (MaxSeriesSamples)", di, iv, maxSlots)
		}
		slots[i+1] = slots[i] + int(k)
	}
	return iv, slots, -1, nil
}
