package history

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// The kinds of counter ReadPerfmon uses.
const (
	pdhIgnored = iota
	pdhCPU
	pdhAvailable
	pdhDiskIOPS
	pdhDiskBytes
	pdhNetwork
)

// pdhCounters maps "object\counter" (lower case, instance removed) to its
// kind; instance is the instance the kind needs ("" for any).
var pdhCounters = map[string]struct {
	kind     int
	instance string
}{
	`processor\% processor time`:        {pdhCPU, "_total"},
	`memory\available mbytes`:           {pdhAvailable, ""},
	`physicaldisk\disk transfers/sec`:   {pdhDiskIOPS, "_total"},
	`physicaldisk\disk bytes/sec`:       {pdhDiskBytes, "_total"},
	`network interface\bytes total/sec`: {pdhNetwork, ""},
}

// A pdhHost is the columns (0-based, in the record) of one host's counters.
type pdhHost struct {
	name     string
	cols     [pdhNetwork]int // by kind-1 for the single-column kinds; -1 if absent
	net      []int           // Bytes Total/sec of each interface
	netTotal int             // of a "_Total" interface instance, -1 if absent
}

// ReadPerfmon reads a Windows performance log in the CSV form typeperf
// and relog write ("-f CSV") and returns one Series per host, in the
// order the hosts first appear in the header. See ReadPerfmonMemory; this
// is ReadPerfmonMemory(r, nil), so Memory is always nil: Windows counts
// the memory still available, and used memory needs the host's total.
func ReadPerfmon(r io.Reader) ([]Series, error) {
	return ReadPerfmonMemory(r, nil)
}

// ReadPerfmonMemory reads a Windows performance log in PDH CSV form and
// returns one Series per host. memoryMiB gives the physical memory of
// hosts, by host name (matched regardless of case); for those, Memory is
// filled and MemoryCapacity set (hosts missing from the map keep Memory
// nil; names not in the log are ignored).
//
// It reads the whole log before it returns: the interval is known only
// once all timestamps are.
//
// The format is RFC 4180 CSV. The header's first field is
//
//	(PDH-CSV 4.0) (<time zone name>)(<bias>)
//
// where bias is the zone's offset in minutes as Windows counts it
// (UTC = local time + bias: 480 for Pacific Standard Time, -60 for
// W. Europe Standard Time). The other header fields are counter paths,
// \\HOST\Object(Instance)\Counter or \\HOST\Object\Counter; counters are
// grouped into hosts by HOST (regardless of case; the first spelling
// names the Series). The first field of each row is the local time,
// MM/DD/YYYY hh:mm:ss.fff, the others the counters' values; a value that
// is empty or blank (typeperf writes " " when a rate is not known yet) is
// a missing sample (NaN).
//
// Of a host's counters (English names, matched regardless of case), it
// uses:
//
//	Processor(_Total)\% Processor Time     CPU, percent
//	Memory\Available MBytes                Memory = memoryMiB[host] − Available (MiB)
//	PhysicalDisk(_Total)\Disk Transfers/sec DiskIOPS
//	PhysicalDisk(_Total)\Disk Bytes/sec    DiskMBps, 1 MB = 10⁶ bytes
//	Network Interface(*)\Bytes Total/sec   Network, Mb/s (1 Mb = 10⁶ bits),
//	                                       summed over the interfaces, or
//	                                       the "_Total" instance if present
//
// and ignores the other counters, as well as per-disk and per-processor
// instances; their values are checked all the same (blank or non-negative
// numbers), so that a log that is wrong somewhere is not half read. A network
// sample is NaN if any interface's is. A host with none of the counters
// above gives no Series; a log where no host has any is an error.
//
// Start is the first timestamp converted to UTC with the bias. The log
// carries one bias, so a log that crosses a daylight-saving change shows
// an hour's gap (spring) or times going backwards (autumn, an error). Interval
// is the median spacing of the timestamps (the lower median for an even
// count), rounded to the second (typeperf and relog sample at whole
// seconds), or to the millisecond if under a second; a spacing
// must be within a quarter interval of a whole multiple of it (typeperf's
// timestamps jitter by milliseconds), and the missed slots of a longer
// spacing are NaN.
//
// Errors are *ParseError with the line (the header is line 1), and the
// column in the message for a bad field: a header that is not PDH-CSV 4.0
// or a counter path that is not \\HOST\..., a counter named twice, a row
// with a different number of fields than the header, a time that cannot
// be read or that is not after the previous row's, a value that is not a
// number, negative, NaN or infinite, CPU above 100, available memory
// above the given total, fewer than two rows, or a series longer than
// MaxSeriesSamples (a gap counts as the samples it misses).
func ReadPerfmonMemory(r io.Reader, memoryMiB map[string]float64) ([]Series, error) {
	return ReadPerfmonWarnings(r, memoryMiB, nil)
}

// ReadPerfmonWarnings is ReadPerfmonMemory that, when w is not nil, skips
// the values a counter cannot have instead of failing: a negative value
// (of any counter: Windows computes rates from raw counters, and a counter
// that wraps or resets gives a negative rate), CPU above 100 %, or more
// memory available than the host's total. Each such value is counted in w
// with its line and column and is missing (NaN) in the Series. Values that
// are not numbers, NaN or infinite are errors still. With w nil it is
// ReadPerfmonMemory.
func ReadPerfmonWarnings(r io.Reader, memoryMiB map[string]float64, w *Warnings) ([]Series, error) {
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
	bias, err := parsePDHHeader(strings.TrimPrefix(header[0], "\ufeff"))
	if err != nil {
		return nil, fieldError(headerLine, 0, "PDH-CSV header", err)
	}

	var hosts []*pdhHost
	byName := map[string]*pdhHost{}
	kindOf := make([]int, len(header)) // by column
	hostOf := make([]*pdhHost, len(header))
	seen := map[string]int{}
	for i := 1; i < len(header); i++ {
		path := strings.TrimSpace(header[i])
		host, object, instance, counter, err := splitCounterPath(path)
		if err != nil {
			return nil, fieldError(headerLine, i, path, err)
		}
		key := strings.ToLower(path)
		if j, dup := seen[key]; dup {
			return nil, fieldError(headerLine, i, path, fmt.Errorf("counter given twice (also column %d)", j+1))
		}
		seen[key] = i
		h := byName[strings.ToLower(host)]
		if h == nil {
			h = &pdhHost{name: host, netTotal: -1}
			for k := range h.cols {
				h.cols[k] = -1
			}
			byName[strings.ToLower(host)] = h
			hosts = append(hosts, h)
		}
		hostOf[i] = h
		c, ok := pdhCounters[strings.ToLower(object+`\`+counter)]
		inst := strings.ToLower(instance)
		if !ok || c.instance != "" && inst != c.instance {
			continue
		}
		kindOf[i] = c.kind
		switch {
		case c.kind != pdhNetwork:
			h.cols[c.kind-1] = i
		case inst == "_total":
			h.netTotal = i
		default:
			h.net = append(h.net, i)
		}
	}
	used := 0
	for _, h := range hosts {
		if h.netTotal >= 0 {
			h.net = []int{h.netTotal}
		}
		for k, c := range h.cols {
			if c >= 0 && (k+1 != pdhAvailable || memCapacity(memoryMiB, h.name) > 0) || len(h.net) > 0 {
				used++
				break
			}
		}
	}
	if used == 0 {
		return nil, &ParseError{Line: headerLine, Err: errors.New("no host has a counter of CPU, disk, network or (with a known total) memory")}
	}

	var (
		times []time.Time
		lines []int
		vals  = make([][]float64, len(header)) // by column; nil for ignored ones
	)
	for i, k := range kindOf {
		if k != pdhIgnored {
			vals[i] = []float64{}
		}
	}
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
		t, err := parsePDHTime(strings.TrimSpace(rec[0]), bias)
		if err != nil {
			return nil, fieldError(line, 0, "time", err)
		}
		if n := len(times); n > 0 && !t.After(times[n-1]) {
			return nil, fieldError(line, 0, "time", fmt.Errorf("%s is not after the previous row's %s (line %d)", t.Format(time.RFC3339Nano), times[n-1].Format(time.RFC3339Nano), lines[n-1]))
		}
		times = append(times, t)
		lines = append(lines, line)
		for i := 1; i < len(rec); i++ {
			x, err := parseValue(rec[i])
			impossible := errors.Is(err, errNegative)
			if err == nil && kindOf[i] == pdhCPU && x > 100 {
				err, impossible = fmt.Errorf("CPU %s%% above 100%%", strings.TrimSpace(rec[i])), true
			}
			if err == nil && kindOf[i] == pdhAvailable {
				if c := memCapacity(memoryMiB, hostOf[i].name); c > 0 && x > c {
					err, impossible = fmt.Errorf("%s MiB available, more than the %v MiB of the host", strings.TrimSpace(rec[i]), c), true
				}
			}
			if err != nil {
				err = fieldError(line, i, header[i], err)
				if !impossible || w == nil {
					return nil, err
				}
				w.add(err)
				x = math.NaN()
			}
			if vals[i] != nil {
				vals[i] = append(vals[i], x)
			}
		}
	}
	if len(times) < 2 {
		return nil, &ParseError{Line: headerLine, Err: fmt.Errorf("%d rows: at least two are needed to infer the interval", len(times))}
	}
	iv, slots, bad, err := grid(times, true)
	if err != nil {
		line := headerLine
		if bad >= 0 {
			line = lines[bad]
		}
		return nil, &ParseError{Line: line, Err: err}
	}
	n := slots[len(slots)-1] + 1
	place := func(src []float64, scale float64) []float64 {
		x := nanSlice(n)
		for j, v := range src {
			x[slots[j]] = v * scale
		}
		return x
	}

	var out []Series
	for _, h := range hosts {
		s := Series{ID: h.name, Start: times[0], Interval: iv}
		if c := h.cols[pdhCPU-1]; c >= 0 {
			s.CPU = place(vals[c], 1)
		}
		if c := h.cols[pdhDiskIOPS-1]; c >= 0 {
			s.DiskIOPS = place(vals[c], 1)
		}
		if c := h.cols[pdhDiskBytes-1]; c >= 0 {
			s.DiskMBps = place(vals[c], 1e-6)
		}
		if len(h.net) > 0 {
			sum := make([]float64, len(times))
			for _, c := range h.net {
				for j, v := range vals[c] {
					sum[j] += v // NaN stays NaN
				}
			}
			s.Network = place(sum, 8e-6)
		}
		if capMiB := memCapacity(memoryMiB, h.name); capMiB > 0 {
			s.MemoryCapacity = capMiB
			if c := h.cols[pdhAvailable-1]; c >= 0 {
				s.Memory = place(vals[c], -1)
				for j, v := range s.Memory {
					s.Memory[j] = capMiB + v // −available; NaN stays NaN
				}
			}
		}
		if s.Len() > 0 {
			out = append(out, s)
		}
	}
	return out, nil
}

// memCapacity looks a host up in memoryMiB regardless of case; 0 if absent.
func memCapacity(memoryMiB map[string]float64, host string) float64 {
	if c, ok := memoryMiB[host]; ok {
		return c
	}
	for k, c := range memoryMiB {
		if strings.EqualFold(k, host) {
			return c
		}
	}
	return 0
}

// parsePDHHeader checks "(PDH-CSV 4.0) (<zone>)(<bias>)" and returns the
// bias.
func parsePDHHeader(f string) (time.Duration, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(f), "(PDH-CSV 4.0)")
	if !ok {
		return 0, fmt.Errorf("%q does not start with (PDH-CSV 4.0)", f)
	}
	rest = strings.TrimSpace(rest)
	open := strings.LastIndexByte(rest, '(')
	if !strings.HasPrefix(rest, "(") || !strings.HasSuffix(rest, ")") || open <= 0 || rest[open-1] != ')' {
		return 0, fmt.Errorf("%q: want (PDH-CSV 4.0) (<time zone>)(<bias minutes>)", f)
	}
	bias, err := strconv.Atoi(rest[open+1 : len(rest)-1])
	if err != nil || bias < -24*60 || bias > 24*60 {
		return 0, fmt.Errorf("%q: bias %q is not a whole number of minutes within a day", f, rest[open+1:len(rest)-1])
	}
	return time.Duration(bias) * time.Minute, nil
}

// parsePDHTime parses a PDH local time and converts it to UTC.
func parsePDHTime(f string, bias time.Duration) (time.Time, error) {
	t, err := time.Parse("01/02/2006 15:04:05", f)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a time MM/DD/YYYY hh:mm:ss.fff", f)
	}
	return t.Add(bias), nil
}

// splitCounterPath splits \\HOST\Object(Instance)\Counter; instance is ""
// when the object has none. The counter is what follows the last
// backslash; the instance is what lies between the first "(" of the
// object and its last ")", so it may itself hold parentheses.
func splitCounterPath(p string) (host, object, instance, counter string, err error) {
	rest, ok := strings.CutPrefix(p, `\\`)
	host, rest, ok2 := strings.Cut(rest, `\`)
	last := strings.LastIndexByte(rest, '\\')
	if !ok || !ok2 || host == "" || last <= 0 || last == len(rest)-1 {
		return "", "", "", "", fmt.Errorf(`%q is not a counter path \\HOST\Object\Counter`, p)
	}
	object, counter = rest[:last], rest[last+1:]
	if i := strings.IndexByte(object, '('); i >= 0 {
		if !strings.HasSuffix(object, ")") {
			return "", "", "", "", fmt.Errorf(`%q: instance lacks its ")"`, p)
		}
		object, instance = object[:i], object[i+1:len(object)-1]
	}
	return host, object, instance, counter, nil
}
