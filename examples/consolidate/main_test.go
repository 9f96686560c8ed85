package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSampleText(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, run(nil, &out, &errOut))
	s := out.String()
	assert.Contains(t, s, "20 VMs on 2 hosts (lower bound 2), 0 overloaded host-intervals of 288")
	assert.Contains(t, s, "host0001 (5320 MIPS")
	assert.Contains(t, s, "146-179_surfsnel_dsl_internl_net_colostate_557")
}

func TestSampleJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	require.NoError(t, run([]string{"-json"}, &out, &errOut))
	var o Output
	require.NoError(t, json.Unmarshal(out.Bytes(), &o))
	assert.Equal(t, 2, o.HostsUsed)
	assert.Len(t, o.Hosts, 2)
	assert.Equal(t, 5320.0, o.Hosts[0].CPU)
	require.Len(t, o.VMs, 20)
	assert.Equal(t, 2500.0, o.VMs[0].CPU)
	assert.Equal(t, 500.0, o.VMs[19].CPU)
	ids := map[string]bool{o.Hosts[0].ID: true, o.Hosts[1].ID: true}
	for _, vm := range o.VMs {
		assert.True(t, ids[vm.Host], vm.ID)
	}
	assert.Equal(t, 0, o.OverloadedIntervals)
	assert.Greater(t, o.EnergyKWh, 0.0)
	require.Len(t, o.Ranked, 20, "every machine is ranked")
	for i := 1; i < len(o.Ranked); i++ {
		a, b := o.Ranked[i-1], o.Ranked[i]
		assert.True(t, a.Consolidate && !b.Consolidate || a.Consolidate == b.Consolidate && a.Score >= b.Score, "rank order at %d", i)
	}
	assert.NotEmpty(t, o.Ranked[0].Reasons)
	// The keys the brief names.
	var raw map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &raw))
	for _, k := range []string{"hosts", "vms", "hosts_used", "energy_kwh", "overloaded_intervals"} {
		assert.Contains(t, raw, k)
	}
}

func TestTraceFileAndMargin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "day.tar.gz")
	require.NoError(t, os.WriteFile(path, sample, 0o644))
	var out, errOut bytes.Buffer
	require.NoError(t, run([]string{"-trace", path, "-format", "planetlab", "-margin", "0.5", "-json"}, &out, &errOut))
	var o Output
	require.NoError(t, json.Unmarshal(out.Bytes(), &o))
	assert.Greater(t, o.HostsUsed, 2)
	for _, h := range o.Hosts {
		assert.LessOrEqual(t, h.Peak, 0.5+1e-9)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"-format", "bitbrains"}, `format "bitbrains" is not supported yet`},
		{[]string{"-format", "perfmon"}, `format "perfmon" is not supported yet`},
		{[]string{"-format", "csv"}, `unknown format "csv"`},
		{[]string{"-trace", "/nonexistent/x.tar.gz"}, "no such file"},
		{[]string{"-margin", "1"}, "margin"},
		{[]string{"extra"}, "unexpected arguments"},
		{[]string{"-bogus"}, "flag provided but not defined"},
	} {
		var out, errOut bytes.Buffer
		err := run(tc.args, &out, &errOut)
		require.Error(t, err, strings.Join(tc.args, " "))
		assert.Contains(t, err.Error(), tc.msg)
	}
	// An archive with a bad file names it.
	path := filepath.Join(t.TempDir(), "bad.tar")
	require.NoError(t, os.WriteFile(path, []byte(strings.Repeat("x", 2048)), 0o644))
	var out, errOut bytes.Buffer
	assert.Error(t, run([]string{"-trace", path}, &out, &errOut))
}
