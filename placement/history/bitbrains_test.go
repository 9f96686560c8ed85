package history

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sampleDir = "testdata/bitbrains"

const header = "Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\tCPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB];\tDisk read throughput [KB/s];\tDisk write throughput [KB/s];\tNetwork received throughput [KB/s];\tNetwork transmitted throughput [KB/s]\n"

// Two rows of 41.csv.
const rows = "1372629804;\t8;\t20799.994872;\t74.533314958;\t0.35833333333333334;\t2.097152E7;\t83884.8;\t0.0;\t0.8;\t0.0;\t1.0\n" +
	"1372630104;\t8;\t20799.994872;\t5000.5;\t24.04;\t2.097152E7;\t1048576;\t12.5;\t3.25;\t7;\t9.5\n"

// withoutLines returns the samples with Line cleared, to compare what
// different layouts of the same rows read.
func withoutLines(s []Sample) []Sample {
	s = slices.Clone(s)
	for i := range s {
		s[i].Line = 0
	}
	return s
}

func readAll(t *testing.T, r io.Reader) ([]Sample, error) {
	t.Helper()
	var out []Sample
	for s, err := range ReadBitbrains(r) {
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

func TestReadBitbrains(t *testing.T) {
	got, err := readAll(t, strings.NewReader(header+rows))
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, Sample{
		Line:                2,
		Time:                time.Date(2013, 6, 30, 22, 3, 24, 0, time.UTC),
		CPUCores:            8,
		CPUCapacityMHz:      20799.994872,
		CPUUsageMHz:         74.533314958,
		CPUUsagePercent:     0.35833333333333334,
		MemoryProvisionedKB: 20971520,
		MemoryUsageKB:       83884.8,
		DiskWriteKBps:       0.8,
		NetTxKBps:           1,
	}, got[0])
	assert.Equal(t, Sample{
		Line:                3,
		Time:                time.Unix(1372630104, 0).UTC(),
		CPUCores:            8,
		CPUCapacityMHz:      20799.994872,
		CPUUsageMHz:         5000.5,
		CPUUsagePercent:     24.04,
		MemoryProvisionedKB: 20971520,
		MemoryUsageKB:       1048576,
		DiskReadKBps:        12.5,
		DiskWriteKBps:       3.25,
		NetRxKBps:           7,
		NetTxKBps:           9.5,
	}, got[1])
	assert.Equal(t, time.UTC, got[0].Time.Location())
}

func TestReadBitbrainsLayout(t *testing.T) {
	want, err := readAll(t, strings.NewReader(header+rows))
	require.NoError(t, err)
	for name, in := range map[string]string{
		"no header":          rows,
		"CRLF":               strings.ReplaceAll(header+rows, "\n", "\r\n"),
		"no final newline":   strings.TrimSuffix(header+rows, "\n"),
		"blank lines":        "\n" + header + "\n  \n" + strings.Replace(rows, "\n", "\n\t\n", 1) + "\n\n",
		"plain semicolons":   strings.ReplaceAll(header+rows, ";\t", ";"),
		"spaces around":      strings.ReplaceAll(header+rows, ";\t", " ; "),
		"one byte at a time": "",
	} {
		t.Run(name, func(t *testing.T) {
			var r io.Reader = strings.NewReader(in)
			if in == "" {
				r = iotest.OneByteReader(strings.NewReader(header + rows))
			}
			got, err := readAll(t, r)
			require.NoError(t, err)
			assert.Equal(t, withoutLines(want), withoutLines(got))
		})
	}
	got, err := readAll(t, strings.NewReader(""))
	require.NoError(t, err)
	assert.Empty(t, got)
	got, err = readAll(t, strings.NewReader(header))
	require.NoError(t, err)
	assert.Empty(t, got)
}

// The header is recognised by its names, regardless of case and of the
// unit the first column states.
func TestReadBitbrainsHeaderNames(t *testing.T) {
	for name, h := range map[string]string{
		"published":  header,
		"lower case": strings.ToLower(header),
		"seconds":    strings.Replace(header, "Timestamp [ms]", "timestamp [s]", 1),
		"bare":       strings.Replace(header, "Timestamp [ms]", "Timestamp", 1),
	} {
		got, err := readAll(t, strings.NewReader(h+rows))
		require.NoError(t, err, name)
		assert.Len(t, got, 2, name)
		assert.Equal(t, 2, got[0].Line, name)
	}
}

func TestReadBitbrainsStopsWhenAsked(t *testing.T) {
	n := 0
	for _, err := range ReadBitbrains(strings.NewReader(header + rows + rows)) {
		require.NoError(t, err)
		n++
		break
	}
	assert.Equal(t, 1, n)
}

func TestReadBitbrainsErrors(t *testing.T) {
	row := func(fields ...string) string {
		f := strings.Split(strings.TrimSuffix(strings.SplitN(rows, "\n", 2)[0], "\n"), ";\t")
		for i := 0; i+1 < len(fields); i += 2 {
			col := map[string]int{"ts": 0, "cores": 1, "cap": 2, "cpu": 3, "pct": 4, "mem": 5, "memused": 6, "rd": 7, "wr": 8, "rx": 9, "tx": 10}[fields[i]]
			f[col] = fields[i+1]
		}
		return strings.Join(f, ";\t") + "\n"
	}
	good := row()
	cases := []struct {
		name       string
		in         string
		line, col  int
		msg        string
		samplesOut int
	}{
		{"malformed number", header + good + row("cpu", "12,5"), 3, 4, `"12,5" is not a number`, 1},
		{"empty field", header + row("mem", ""), 2, 6, `"" is not a number`, 0},
		{"NaN", header + row("memused", "NaN"), 2, 7, "not a finite number", 0},
		{"Inf", header + row("rx", "+Inf"), 2, 10, "not a finite number", 0},
		{"overflow", header + row("tx", "1e400"), 2, 11, "not a finite number", 0},
		{"negative", header + good + good + row("rd", "-0.5"), 4, 8, "negative value -0.5", 2},
		{"negative cores", header + row("cores", "-2"), 2, 2, "negative value -2", 0},
		{"fractional cores", header + row("cores", "2.5"), 2, 2, "not a whole number", 0},
		{"fractional timestamp", header + row("ts", "1372629804.5"), 2, 1, "not a whole number of seconds", 0},
		{"negative timestamp", header + row("ts", "-1"), 2, 1, "negative timestamp", 0},
		{"garbage timestamp", header + good + "x" + good, 3, 1, "not a whole number", 1},
		{"too few columns", header + "1372629804;\t8;\t1.0\n", 2, 4, "3 columns, want 11", 0},
		{"too many columns", header + strings.TrimSuffix(good, "\n") + ";\t1\n", 2, 12, "more than 11 columns", 0},
		{"header columns", "Timestamp;\tCPU cores\n" + good, 1, 0, "header has 2 columns, want 11", 0},
		// Regression: a first line whose first field was not a number was
		// taken for the header and dropped, whatever it held.
		{"garbage first row", "x" + good + good, 1, 1, `"x1372629804" is neither a timestamp nor the header's first column`, 0},
		{"header misnamed", strings.Replace(header, "Memory usage [KB]", "Memory free [KB]", 1) + good, 1, 7, `header names the column "Memory free [KB]"`, 0},
		{"header reordered", strings.Replace(strings.Replace(header, "Disk read", "DISK_X", 1), "Disk write", "Disk read", 1) + good, 1, 8, `"DISK_X throughput [KB/s]"`, 0},
		{"long line", header + strings.Repeat("1", maxLine+1) + "\n", 2, 0, "longer than", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := readAll(t, strings.NewReader(c.in))
			require.Error(t, err)
			var pe *ParseError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, c.line, pe.Line, "line")
			assert.Equal(t, c.col, pe.Column, "column")
			assert.Contains(t, err.Error(), c.msg)
			if c.col > 0 {
				assert.Contains(t, err.Error(), "column "+itoa(c.col))
			}
			assert.Contains(t, err.Error(), "line "+itoa(c.line))
			assert.Len(t, got, c.samplesOut)
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// formatRow writes a sample as the trace does.
func formatRow(s Sample) string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	return strings.Join([]string{
		strconv.FormatInt(s.Time.Unix(), 10), strconv.Itoa(s.CPUCores),
		f(s.CPUCapacityMHz), f(s.CPUUsageMHz), f(s.CPUUsagePercent), f(s.MemoryProvisionedKB), f(s.MemoryUsageKB),
		f(s.DiskReadKBps), f(s.DiskWriteKBps), f(s.NetRxKBps), f(s.NetTxKBps),
	}, ";\t") + "\n"
}

func TestParseErrorMessage(t *testing.T) {
	err := &ParseError{Path: "41.csv", Line: 7, Column: 4, Err: errors.New(`"x" is not a number`)}
	assert.Equal(t, `history: 41.csv: line 7, column 4 (CPU usage [MHZ]): "x" is not a number`, err.Error())
	err = &ParseError{Line: 2, Err: errors.New("boom")}
	assert.Equal(t, "history: line 2: boom", err.Error())
	assert.Equal(t, "boom", errors.Unwrap(err).Error())
}

func TestReadBitbrainsReaderError(t *testing.T) {
	boom := errors.New("disk on fire")
	r := io.MultiReader(strings.NewReader(header+rows), iotest.ErrReader(boom))
	got, err := readAll(t, r)
	assert.Len(t, got, 2)
	assert.ErrorIs(t, err, boom)
	var pe *ParseError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 4, pe.Line)
}

func TestReadBitbrainsFile(t *testing.T) {
	s, err := ReadBitbrainsFile(filepath.Join(sampleDir, "41.csv"))
	require.NoError(t, err)
	assert.Len(t, s, 572)
	assert.Equal(t, int64(1372629804), s[0].Time.Unix())
	assert.Equal(t, int64(1372802327), s[len(s)-1].Time.Unix())
	for _, x := range s {
		assert.Equal(t, 8, x.CPUCores)
	}

	bad := filepath.Join(t.TempDir(), "9.csv")
	require.NoError(t, os.WriteFile(bad, []byte(header+rows+"1;2;3\n"), 0o644))
	s, err = ReadBitbrainsFile(bad)
	assert.Len(t, s, 2)
	require.Error(t, err)
	assert.Contains(t, err.Error(), bad+": line 4, column 4")

	_, err = ReadBitbrainsFile(filepath.Join(t.TempDir(), "missing.csv"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestReadBitbrainsDir(t *testing.T) {
	var ids []string
	total := 0
	for tr, err := range ReadBitbrainsDir(sampleDir) {
		require.NoError(t, err)
		ids = append(ids, tr.ID)
		total += len(tr.Samples)
	}
	assert.Equal(t, []string{"27", "41", "193", "255", "264"}, ids)
	assert.Equal(t, 575+572+572+576+119, total)

	// Numeric order, other names after, other files and folders ignored,
	// a bad file reported and the rest still read.
	dir := t.TempDir()
	for name, body := range map[string]string{"10.csv": rows, "2.csv": header + rows, "b.csv": rows, "a.csv": "x;y\n", "notes.txt": "hi", "1.csv.bak": rows} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	require.NoError(t, os.Mkdir(filepath.Join(dir, "3.csv"), 0o755))
	ids = nil
	var errs []error
	for tr, err := range ReadBitbrainsDir(dir) {
		ids = append(ids, tr.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		assert.Len(t, tr.Samples, 2, tr.ID)
	}
	assert.Equal(t, []string{"2", "10", "a", "b"}, ids)
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].Error(), "a.csv: line 1")

	// Stopping early.
	n := 0
	for range ReadBitbrainsDir(dir) {
		n++
		break
	}
	assert.Equal(t, 1, n)

	for _, err := range ReadBitbrainsDir(filepath.Join(dir, "missing")) {
		assert.ErrorIs(t, err, os.ErrNotExist)
	}
}

// tarOf packs the sample folder (and a non-CSV file) as a tar archive.
func tarOf(t *testing.T, compress bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if compress {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "rnd/", Typeflag: tar.TypeDir, Mode: 0o755}))
	entries, err := os.ReadDir(sampleDir)
	require.NoError(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(sampleDir, e.Name()))
		require.NoError(t, err)
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "rnd/" + e.Name(), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))}))
		_, err = tw.Write(b)
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	if zw != nil {
		require.NoError(t, zw.Close())
	}
	return buf.Bytes()
}

func TestReadBitbrainsTar(t *testing.T) {
	var want []Trace
	for tr, err := range ReadBitbrainsDir(sampleDir) {
		require.NoError(t, err)
		want = append(want, tr)
	}
	for _, compress := range []bool{false, true} {
		var got []Trace
		for tr, err := range ReadBitbrainsTar(bytes.NewReader(tarOf(t, compress))) {
			require.NoError(t, err)
			got = append(got, tr)
		}
		slices.SortFunc(got, func(a, b Trace) int { return CompareIDs(a.ID, b.ID) })
		require.Len(t, got, len(want))
		for i := range got {
			assert.Equal(t, "rnd/"+got[i].ID+".csv", got[i].Path)
			assert.Equal(t, filepath.Join(sampleDir, want[i].ID+".csv"), want[i].Path)
			got[i].Path = want[i].Path
		}
		assert.Equal(t, want, got, "compressed %v", compress)
	}

	// A truncated archive fails.
	b := tarOf(t, true)
	var err error
	for _, e := range ReadBitbrainsTar(bytes.NewReader(b[:len(b)/2])) {
		if e != nil {
			err = e
		}
	}
	assert.Error(t, err)

	// A bad file names itself and the rest is read.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct{ name, body string }{{"x/1.csv", "1;2\n"}, {"x/2.csv", rows}} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.body))}))
		_, err := tw.Write([]byte(f.body))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	var ids []string
	var errs []error
	for tr, err := range ReadBitbrainsTar(&buf) {
		ids = append(ids, tr.ID)
		if err != nil {
			errs = append(errs, err)
		}
	}
	assert.Equal(t, []string{"1", "2"}, ids)
	require.Len(t, errs, 1)
	assert.Contains(t, errs[0].Error(), "x/1.csv: line 1, column 3")
}

// An archive made with macOS's tar holds a "._name" AppleDouble file (binary
// metadata, not a trace) beside each file, and zip-style "__MACOSX" folders
// may hold more; links and folders named like traces are not traces either.
// Regression: "._27.csv" was read as the trace of VM "._27" and failed.
func TestReadBitbrainsTarSkipsNonTraces(t *testing.T) {
	appleDouble := "\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \x00\x02"
	for _, compress := range []bool{false, true} {
		var buf bytes.Buffer
		var w io.Writer = &buf
		zw := gzip.NewWriter(&buf)
		if compress {
			w = zw
		}
		tw := tar.NewWriter(w)
		for _, e := range []struct {
			name, body string
			typ        byte
		}{
			{"rnd/._27.csv", appleDouble, tar.TypeReg},
			{"rnd/27.csv", rows, tar.TypeReg},
			{"__MACOSX/rnd/._28.csv", appleDouble, tar.TypeReg},
			{"__MACOSX/rnd/28.csv", appleDouble, tar.TypeReg},
			{"rnd/.hidden.csv", "junk", tar.TypeReg},
			{"rnd/dir.csv/", "", tar.TypeDir},
			{"rnd/fifo.csv", "", tar.TypeFifo},
			{"rnd/29.csv", header + rows, tar.TypeReg},
		} {
			hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
			if e.typ != tar.TypeReg {
				hdr.Size = 0
			}
			require.NoError(t, tw.WriteHeader(hdr))
			if e.typ == tar.TypeReg {
				_, err := tw.Write([]byte(e.body))
				require.NoError(t, err)
			}
		}
		// A symbolic link named like a trace.
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "rnd/30.csv", Typeflag: tar.TypeSymlink, Linkname: "27.csv"}))
		require.NoError(t, tw.Close())
		if compress {
			require.NoError(t, zw.Close())
		}
		var ids []string
		for tr, err := range ReadBitbrainsTar(&buf) {
			require.NoError(t, err, "compressed %v", compress)
			assert.Len(t, tr.Samples, 2)
			ids = append(ids, tr.ID)
		}
		assert.Equal(t, []string{"27", "29"}, ids, "compressed %v", compress)
	}
}

func TestCompareIDs(t *testing.T) {
	ids := []string{"b", "10", "2", "a", "1", "010", "18446744073709551616"}
	SortIDs(ids)
	assert.Equal(t, []string{"1", "2", "010", "10", "18446744073709551616", "a", "b"}, ids)
}

// FuzzReadBitbrains feeds the reader arbitrary input: it must not panic;
// what it accepts must be finite and not negative and read back the same
// once written out again; what it refuses must say where.
func FuzzReadBitbrains(f *testing.F) {
	entries, err := os.ReadDir(sampleDir)
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".csv") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(sampleDir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		lines := strings.SplitAfter(string(b), "\n")
		f.Add(strings.Join(lines[:min(4, len(lines))], ""))
	}
	f.Add(header + rows)
	f.Add(rows)
	f.Add("1;2;3\n")
	f.Add(header + "1372629804;\t-1;\t0;\t0;\t0;\t0;\t0;\t0;\t0;\t0;\t0\n")
	f.Add("1372629804;\t1;\tNaN;\t0;\t0;\t0;\t0;\t0;\t0;\t0;\t0\r\n")
	f.Add("0;0;0;0;0;0;0;0;0;0;0\n\n0;0;1e-400;0x1p3;0;0;0;0;0;0;0")
	f.Add("x" + rows)
	f.Add(strings.ToUpper(header) + rows)
	f.Add(header + "1372629804;\t1;\t2000;\t2100;\t105;\t1024;\t2048;\t0;\t0;\t0;\t0\n" + rows)
	f.Add("timestamp;a;b;c;d;e;f;g;h;i;j\n" + rows)
	defer func(n int) { maxSlots = n }(maxSlots)
	maxSlots = 1 << 16
	f.Fuzz(func(t *testing.T, in string) {
		var got []Sample
		var err error
		for s, e := range ReadBitbrains(strings.NewReader(in)) {
			if e != nil {
				err = e
				break
			}
			got = append(got, s)
		}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if pe.Line < 1 || pe.Line > strings.Count(in, "\n")+2 || pe.Column < 0 || pe.Column > len(bitbrainsColumns)+1 {
				t.Fatalf("error %v: line %d, column %d out of range", err, pe.Line, pe.Column)
			}
			return
		}
		for _, s := range got {
			for _, x := range []float64{s.CPUCapacityMHz, s.CPUUsageMHz, s.CPUUsagePercent, s.MemoryProvisionedKB, s.MemoryUsageKB, s.DiskReadKBps, s.DiskWriteKBps, s.NetRxKBps, s.NetTxKBps} {
				if !(x >= 0) || math.IsInf(x, 0) {
					t.Fatalf("accepted %v in %+v", x, s)
				}
			}
			if s.CPUCores < 0 || s.Time.Unix() < 0 {
				t.Fatalf("accepted %+v", s)
			}
		}
		// What is read converts to a series of utilisations within the
		// capacity, the inconsistent rows counted.
		if len(got) > 0 {
			var w Warnings
			s, err := BitbrainsSeries(Trace{ID: "f", Samples: got}, got[0].Time.Truncate(time.Minute), time.Minute, 0, &w)
			if err == nil {
				if w.Count > len(got) || len(w.First) > min(w.Count, MaxWarnings) {
					t.Fatalf("warnings %+v of %d rows", w, len(got))
				}
				for _, v := range s.CPU {
					if !math.IsNaN(v) && (v < 0 || v > 100) {
						t.Fatalf("CPU %v %% from %+v", v, got)
					}
				}
			} else if !strings.Contains(err.Error(), "MaxSeriesSamples") {
				t.Fatalf("BitbrainsSeries: %v", err)
			}
		}
		var b strings.Builder
		b.WriteString(header)
		for _, s := range got {
			b.WriteString(formatRow(s))
		}
		again, err := readAll(t, strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("reading back %q: %v", b.String(), err)
		}
		if len(got) == 0 {
			got = nil
		}
		if !slices.Equal(withoutLines(got), withoutLines(again)) {
			t.Fatalf("read back %+v, want %+v", again, got)
		}
	})
}

func TestReadBitbrainsRefusesMilliseconds(t *testing.T) {
	for _, err := range ReadBitbrains(strings.NewReader("1372629804000;\t1;\t2000;\t100;\t5;\t1024;\t512;\t0;\t0;\t0;\t0\n")) {
		if err == nil || !strings.Contains(err.Error(), "milliseconds") {
			t.Fatalf("got %v", err)
		}
		return
	}
	t.Fatal("no row")
}
