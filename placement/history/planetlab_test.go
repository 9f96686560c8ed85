package history

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// planetLabText returns a valid trace: n lines, value i%101 on line i+1.
func planetLabText(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(strconv.Itoa(i % 101))
		b.WriteByte('\n')
	}
	return b.String()
}

func TestReadPlanetLab(t *testing.T) {
	s, err := ReadPlanetLab(strings.NewReader(planetLabText(288)), "vm1")
	require.NoError(t, err)
	assert.Equal(t, "vm1", s.ID)
	assert.Equal(t, 5*time.Minute, s.Interval)
	require.Len(t, s.CPU, 288)
	assert.Equal(t, 288, s.Len())
	assert.Equal(t, 0.0, s.CPU[0])
	assert.Equal(t, 100.0, s.CPU[100])
	assert.Equal(t, 0.0, s.CPU[101])
	assert.Nil(t, s.Memory)

	// CRLF, blank space around numbers, no final newline.
	text := strings.ReplaceAll(planetLabText(288), "\n", " \r\n")
	text = " " + strings.TrimSuffix(text, "\r\n")
	s, err = ReadPlanetLab(strings.NewReader(text), "vm2")
	require.NoError(t, err)
	assert.Equal(t, 99.0, s.CPU[99])
}

func TestReadPlanetLabErrors(t *testing.T) {
	lines := strings.Split(strings.TrimSuffix(planetLabText(288), "\n"), "\n")
	with := func(i int, v string) string {
		l := slices.Clone(lines)
		l[i] = v
		return strings.Join(l, "\n") + "\n"
	}
	for _, tc := range []struct {
		name, text string
		line       int
		msg        string
	}{
		{"empty", "", 0, "0 lines, want 288"},
		{"short", planetLabText(287), 287, "287 lines, want 288"},
		{"long", planetLabText(289), 289, "more than 288 lines"},
		{"word", with(9, "abc"), 10, `"abc" is not a whole number`},
		{"fraction", with(0, "1.5"), 1, `"1.5" is not a whole number`},
		{"blank", with(5, ""), 6, `"" is not a whole number`},
		{"negative", with(19, "-1"), 20, "-1 is not a percentage"},
		{"above 100", with(287, "101"), 288, "101 is not a percentage"},
		{"huge", with(3, "99999999999999999999999"), 4, "not a whole number"},
		{"too long", with(3, strings.Repeat("1", maxLine+1)), 4, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadPlanetLab(strings.NewReader(tc.text), "dir/vm")
			var pe *ParseError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.line, pe.Line)
			assert.Equal(t, "dir/vm", pe.Path)
			assert.Contains(t, err.Error(), tc.msg)
			assert.Contains(t, err.Error(), "dir/vm: line ")
		})
	}
}

type tarFile struct {
	name, text string
	dir        bool
}

func makeTar(t *testing.T, files []tarFile, zip bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w = &buf
	var zw *gzip.Writer
	tw := tar.NewWriter(w)
	if zip {
		zw = gzip.NewWriter(w)
		tw = tar.NewWriter(zw)
	}
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.text)), Typeflag: tar.TypeReg}
		if f.dir {
			hdr = &tar.Header{Name: f.name, Mode: 0o755, Typeflag: tar.TypeDir}
		}
		require.NoError(t, tw.WriteHeader(hdr))
		_, err := tw.Write([]byte(f.text))
		require.NoError(t, err)
	}
	require.NoError(t, tw.Close())
	if zw != nil {
		require.NoError(t, zw.Close())
	}
	return buf.Bytes()
}

func TestReadPlanetLabTar(t *testing.T) {
	good := planetLabText(288)
	files := []tarFile{
		{name: "20110303/", dir: true},
		{name: "20110303/zeta", text: good},
		{name: "20110303/alpha", text: good},
		{name: "20110303/bad", text: "x\n"},
		{name: "20110303/.hidden", text: "junk"},
		{name: "20110303/mid dle", text: good},
	}
	for _, zip := range []bool{false, true} {
		data := makeTar(t, files, zip)
		var ids []string
		var errs []error
		for s, err := range ReadPlanetLabTar(bytes.NewReader(data)) {
			ids = append(ids, s.ID)
			errs = append(errs, err)
			if err == nil {
				assert.Len(t, s.CPU, 288)
				assert.Equal(t, time.Date(2011, 3, 3, 0, 0, 0, 0, time.UTC), s.Start)
			}
		}
		assert.Equal(t, []string{"alpha", "bad", "mid dle", "zeta"}, ids, "gzip %v", zip)
		var pe *ParseError
		require.ErrorAs(t, errs[1], &pe)
		assert.Equal(t, "20110303/bad", pe.Path)
		assert.Equal(t, 1, pe.Line)
		assert.NoError(t, errs[0])
		assert.NoError(t, errs[2])
		assert.NoError(t, errs[3])
	}

	// Stopping early.
	n := 0
	for range ReadPlanetLabTar(bytes.NewReader(makeTar(t, files, true))) {
		n++
		break
	}
	assert.Equal(t, 1, n)
}

func TestReadPlanetLabTarBroken(t *testing.T) {
	data := makeTar(t, []tarFile{{name: "a", text: planetLabText(288)}}, true)
	for name, in := range map[string][]byte{
		"truncated gzip": data[:len(data)/2],
		"bad gzip":       {0x1f, 0x8b, 0, 0},
		"not tar":        bytes.Repeat([]byte("x"), 1024),
	} {
		n := 0
		var last error
		for _, err := range ReadPlanetLabTar(bytes.NewReader(in)) {
			n++
			last = err
		}
		assert.Equal(t, 1, n, name)
		assert.Error(t, last, name)
	}
}

func TestReadPlanetLabSample(t *testing.T) {
	f, err := os.Open("testdata/planetlab/20110303-sample.tar.gz")
	require.NoError(t, err)
	defer f.Close()
	var ids []string
	for s, err := range ReadPlanetLabTar(f) {
		require.NoError(t, err)
		require.Len(t, s.CPU, 288)
		for _, v := range s.CPU {
			require.True(t, v >= 0 && v <= 100)
		}
		ids = append(ids, s.ID)
	}
	assert.Len(t, ids, 20)
	assert.True(t, slices.IsSorted(ids))
	assert.Equal(t, "146-179_surfsnel_dsl_internl_net_colostate_557", ids[0])
}

func FuzzReadPlanetLab(f *testing.F) {
	f.Add([]byte(planetLabText(288)))
	f.Add([]byte(strings.ReplaceAll(planetLabText(288), "\n", "\r\n")))
	f.Add([]byte("1\n2\n"))
	f.Add([]byte("-1\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ReadPlanetLab(bytes.NewReader(data), "f")
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Path != "f" || pe.Line < 0 {
				t.Fatalf("error %v is not a *ParseError naming the file", err)
			}
			return
		}
		if len(s.CPU) != PlanetLabSamples {
			t.Fatalf("%d samples without error", len(s.CPU))
		}
		for i, v := range s.CPU {
			if !(v >= 0 && v <= 100) || v != float64(int(v)) {
				t.Fatalf("sample %d = %v", i, v)
			}
		}
	})
}
