package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

// TestQuickstart runs the quickstart, so that the first command of the
// README keeps working: every step must succeed and report what it did.
func TestQuickstart(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), t.TempDir(), &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) > 40 {
		t.Errorf("%d lines of output, want at most 40", len(lines))
	}
	for _, want := range []string{
		`(?m)^1\. fleet: +3 sites, 36 simulated hosts .*, \d+ VMs already running \(`,
		`(?m)^2\. library: +share "central" .*template web-small`,
		`(?m)^3\. manager: `,
		`(?m)^4\. add hosts: +36 hosts in 3 groups; \d+ VMs found`,
		`(?m)^5\. create VMs: +6 VMs from template web-small`,
		`(?m)^ +web-01 +8 vCPU, 64 GiB +paris +on par-\d\d +★+½? +running; next best \S+ ★+½?, \S+ ★`,
		`(?m)^ +web-06 +2 vCPU, 2 GiB +edge +on edge-\d\d +★+½? +running`,
		`(?m)^6\. p2v: +1 GiB disk \(mbr, fat32\) captured into the library as central:p2v/legacy-srv\.vhdx: read 4\d\.\d MiB of 1 GiB`,
		`(?m)^7\. deploy: +legacy-srv from central:p2v/legacy-srv\.vhdx on par-\d\d ★+½?, running \(`,
		`(?m)^8\. consolidate: +20 servers ranked on a day of CPU history: \d+ candidates`,
		`(?m)^ +\S+ +[01]\.\d\d consolidate `,
		`(?m)^9\. migrate: +web-01 from par-\d\d to par-\d\d ★+½?, live; it is running \(`,
		`(?m)^done in `,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("output does not match %s", want)
		}
	}
}

// TestStars checks how ratings are shown.
func TestStars(t *testing.T) {
	for s, want := range map[float64]string{0: "-", 0.5: "½", 3: "★★★", 4.5: "★★★★½", 5: "★★★★★"} {
		if got := stars(s); got != want {
			t.Errorf("stars(%v) = %q, want %q", s, got, want)
		}
	}
}
