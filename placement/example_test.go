package placement_test

import (
	"context"
	"fmt"
	"log"

	"github.com/vmmkit/vmmkit/placement"
)

// Rate every host for a VM: stars, and for a host that cannot take it, why.
func Example() {
	hosts := []*placement.Host{
		{ID: "hv1", Cores: 32, Capacity: placement.Vector{placement.CPU: 93632, placement.Memory: 262144},
			Used: placement.Vector{placement.CPU: 60000, placement.Memory: 200000}},
		{ID: "hv2", Cores: 32, Capacity: placement.Vector{placement.CPU: 93632, placement.Memory: 262144},
			Used: placement.Vector{placement.CPU: 10000, placement.Memory: 65536}},
		{ID: "hv3", Cores: 32, Capacity: placement.Vector{placement.CPU: 93632, placement.Memory: 262144},
			Used:    placement.Vector{placement.CPU: 10000, placement.Memory: 250000},
			Reserve: placement.Vector{placement.Memory: 2048}},
		{ID: "hv4", State: placement.Maintenance, Cores: 32, Capacity: placement.Vector{placement.CPU: 93632, placement.Memory: 262144}},
	}
	vm := &placement.VM{ID: "web01", VCPU: 4, Memory: 16384, Expected: placement.Vector{placement.CPU: 4000}}

	p, err := placement.New(placement.Config{Goal: placement.LoadBalance})
	if err != nil {
		log.Fatal(err)
	}
	ratings, err := p.Rate(context.Background(), vm, hosts)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range ratings {
		if r.Err != nil {
			fmt.Printf("%s: rejected: %v\n", r.Host.ID, r.Err)
			continue
		}
		fmt.Printf("%s: %.1f stars\n", r.Host.ID, r.Stars)
	}
	// Output:
	// hv2: 4.0 stars
	// hv1: 1.0 stars
	// hv3: rejected: FitsResources: memory: needs 16.0 GiB, 9.9 GiB free after 2.0 GiB reserve
	// hv4: rejected: HostUp: host is in maintenance
}

// Place a batch of VMs so that as few hosts as possible run them.
func ExamplePlacer_Place() {
	var hosts []*placement.Host
	for i := 1; i <= 4; i++ {
		hosts = append(hosts, &placement.Host{ID: fmt.Sprintf("hv%d", i), Cores: 16,
			Capacity: placement.Vector{placement.CPU: 16 * 2600, placement.Memory: 131072}})
	}
	var vms []*placement.VM
	for i, gib := range []float64{64, 48, 32, 32, 16, 16, 8, 200} {
		vms = append(vms, &placement.VM{ID: fmt.Sprintf("vm%d", i), VCPU: 2, Memory: gib * 1024})
	}
	p, err := placement.New(placement.Config{Goal: placement.Consolidate})
	if err != nil {
		log.Fatal(err)
	}
	plan, err := p.Place(context.Background(), vms, hosts, nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, a := range plan.Assignments {
		fmt.Println(a.VM.ID, "->", a.Host.ID)
	}
	for _, u := range plan.Unplaced {
		fmt.Println(u.VM.ID, "unplaced")
	}
	fmt.Println("hosts used:", plan.HostsUsed)
	// Output:
	// vm0 -> hv1
	// vm1 -> hv1
	// vm2 -> hv2
	// vm3 -> hv2
	// vm4 -> hv1
	// vm5 -> hv2
	// vm6 -> hv2
	// vm7 unplaced
	// hosts used: 2
}
