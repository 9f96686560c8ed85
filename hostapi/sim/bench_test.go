package sim_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/sim"
)

// BenchmarkFleet10k creates a fleet of 10 000 hosts and reads every
// host's facts.
func BenchmarkFleet10k(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		f, err := sim.New(sim.Config{Count: 10000})
		if err != nil {
			b.Fatal(err)
		}
		for _, h := range f.Hosts() {
			if _, err := h.Host(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkVMs1000Stats lists the 1 000 running VMs of a host and reads
// each one's stats: the driver-overhead benchmark of issue 8 (the libvirt
// driver has its own). It reports the cost per VM.
func BenchmarkVMs1000Stats(b *testing.B) {
	ctx := context.Background()
	f, err := sim.New(sim.Config{Hosts: []sim.HostConfig{{Name: "big", Cores: 1024, Memory: 4 << 40}}})
	if err != nil {
		b.Fatal(err)
	}
	h := f.Host("big")
	const n = 1000
	for i := range n {
		vm, err := h.CreateVM(ctx, hostapi.VMSpec{Name: fmt.Sprintf("vm%04d", i), VCPUs: 2, Memory: 2 << 30})
		if err != nil {
			b.Fatal(err)
		}
		if err := h.Start(ctx, vm.ID); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		vms, err := h.VMs(ctx)
		if err != nil || len(vms) != n {
			b.Fatalf("VMs: %d, %v", len(vms), err)
		}
		for _, vm := range vms {
			if _, err := h.Stats(ctx, vm.ID); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/VM")
}
