package placement

import (
	"context"
	"testing"
)

// NoImprove returns the greedy pass's plan as it is: the same assignments
// as one pass, where the default Place goes on to improve and spread them.
func TestPlaceNoImproveKeepsGreedyPlan(t *testing.T) {
	vms, hs := improveCase()
	p, err := New(Config{Goal: Consolidate})
	if err != nil {
		t.Fatal(err)
	}
	quick, err := p.Place(context.Background(), vms, hs, &PlaceOptions{NoImprove: true})
	if err != nil {
		t.Fatal(err)
	}
	full, err := p.Place(context.Background(), vms, hs, nil)
	if err != nil {
		t.Fatal(err)
	}
	state, norm := p.newPlaceState(hs, len(vms[0].History.Series))
	greedy, _, err := p.pass(context.Background(), p.placementOrder(vms, hs, norm), state, PlaceOptions{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(quick.Assignments) != len(greedy) {
		t.Fatalf("NoImprove placed %d VMs, the greedy pass %d", len(quick.Assignments), len(greedy))
	}
	same := true
	for i, a := range quick.Assignments {
		if a.VM != greedy[i].VM || a.Host != greedy[i].Host {
			t.Fatalf("assignment %d: NoImprove %s on %s, greedy %s on %s", i, a.VM.ID, a.Host.ID, greedy[i].VM.ID, greedy[i].Host.ID)
		}
	}
	for i, a := range full.Assignments {
		if i >= len(greedy) || a.Host != greedy[i].Host || a.VM != greedy[i].VM {
			same = false
			break
		}
	}
	if same {
		t.Fatal("the default Place returned the greedy plan too: this case no longer shows what NoImprove skips")
	}
	t.Logf("hosts: NoImprove %d, default %d", quick.HostsUsed, full.HostsUsed)
}
