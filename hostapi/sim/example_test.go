package sim_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/sim"
)

// A fleet of three hosts; a VM holds its host's memory while it runs.
func Example() {
	ctx := context.Background()
	fleet, err := sim.New(sim.Config{Count: 3, Template: sim.HostConfig{Cores: 16, Memory: 64 << 30}})
	if err != nil {
		panic(err)
	}
	h := fleet.Host("host2")
	vm, err := h.CreateVM(ctx, hostapi.VMSpec{Name: "web01", VCPUs: 4, Memory: 8 << 30})
	if err != nil {
		panic(err)
	}
	if err := h.Start(ctx, vm.ID); err != nil {
		panic(err)
	}
	for _, h := range fleet.Hosts() {
		info, _ := h.Host(ctx)
		fmt.Printf("%s: %d GiB free of %d, CPU %.0f of %.0f MHz\n",
			info.Name, info.MemoryFree>>30, info.MemoryTotal>>30, info.CPUUsed, info.CPUTotal())
	}
	// Output:
	// host1: 64 GiB free of 64, CPU 0 of 41600 MHz
	// host2: 56 GiB free of 64, CPU 2080 of 41600 MHz
	// host3: 64 GiB free of 64, CPU 0 of 41600 MHz
}

// A live migration reports its progress and leaves the VM running on the
// destination.
func ExampleHost_Migrate() {
	ctx := context.Background()
	fleet, _ := sim.New(sim.Config{Count: 2})
	src, dst := fleet.Host("host1"), fleet.Host("host2")
	vm, _ := src.CreateVM(ctx, hostapi.VMSpec{Name: "db01", VCPUs: 2, Memory: 1 << 30})
	_ = src.Start(ctx, vm.ID)

	err := src.Migrate(ctx, vm.ID, dst, &hostapi.MigrateOptions{
		Live: true,
		Progress: func(done, total int64) {
			if done == total {
				fmt.Printf("moved %d MiB\n", done>>20)
			}
		},
	})
	if err != nil {
		panic(err)
	}
	moved, _ := dst.VM(ctx, "db01")
	_, err = src.VM(ctx, "db01")
	fmt.Println(moved.State, errors.Is(err, hostapi.ErrNotFound))
	// Output:
	// moved 1024 MiB
	// running true
}

// Faults make a host fail the way real ones do.
func ExampleHost_SetFaults() {
	ctx := context.Background()
	fleet, _ := sim.New(sim.Config{Count: 2})
	src, dst := fleet.Host("host1"), fleet.Host("host2")
	vm, _ := src.CreateVM(ctx, hostapi.VMSpec{Name: "app01", VCPUs: 1, Memory: 1 << 30})
	_ = src.Start(ctx, vm.ID)

	src.SetFaults(sim.Faults{FailMigrationAt: 0.5})
	err := src.Migrate(ctx, vm.ID, dst, &hostapi.MigrateOptions{Live: true})
	fmt.Println(errors.Is(err, hostapi.ErrHostUnreachable))
	still, _ := src.VM(ctx, vm.ID)
	fmt.Println(still.State)

	dst.SetFaults(sim.Faults{Down: true})
	_, err = dst.Host(ctx)
	fmt.Println(err)
	// Output:
	// true
	// running
	// host on host2: host unreachable
}
