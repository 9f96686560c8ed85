package placement

import (
	"context"
	"fmt"
	"slices"
)

// HostUp rejects hosts that are in maintenance or not responding.
type HostUp struct{}

func (HostUp) Name() string { return "HostUp" }

// Rejections of hosts that are not ready, made once: a fleet has many.
var (
	errMaintenance   = &Rejection{Plugin: "HostUp", Reason: "host is " + Maintenance.String()}
	errNotResponding = &Rejection{Plugin: "HostUp", Reason: "host is " + NotResponding.String()}
)

func (HostUp) Filter(_ context.Context, _ *VM, h *Host) error {
	switch h.State {
	case Ready:
		return nil
	case Maintenance:
		return errMaintenance
	case NotResponding:
		return errNotResponding
	}
	return Reject("host is %s", h.State)
}

// InGroup rejects hosts outside the VM's host group, when it names one.
type InGroup struct{}

func (InGroup) Name() string { return "InGroup" }

func (InGroup) Filter(_ context.Context, vm *VM, h *Host) error {
	if vm.Group != "" && h.Group != vm.Group {
		return Reject("host is in group %q, the VM needs %q", h.Group, vm.Group)
	}
	return nil
}

// HasFeatures rejects hosts that lack a feature the VM requires or cannot
// run the VM's disk format.
type HasFeatures struct{}

func (HasFeatures) Name() string { return "HasFeatures" }

func (HasFeatures) Filter(_ context.Context, vm *VM, h *Host) error {
	for _, f := range vm.Features {
		if !slices.Contains(h.Features, f) {
			return Reject("host lacks feature %q", f)
		}
	}
	if vm.Format != "" && len(h.Formats) > 0 && !slices.Contains(h.Formats, vm.Format) {
		return Reject("host runs disk formats %v, not %q", h.Formats, vm.Format)
	}
	return nil
}

// Affinity keeps a VM with the VMs it must share a host with and away from
// those it must not.
type Affinity struct{}

func (Affinity) Name() string { return "Affinity" }

func (Affinity) Filter(_ context.Context, vm *VM, h *Host) error {
	for _, id := range vm.AntiAffinity {
		if slices.Contains(h.VMs, id) {
			return Reject("runs %s, which this VM must not share a host with", id)
		}
	}
	for _, id := range vm.Affinity {
		if !slices.Contains(h.VMs, id) {
			return Reject("does not run %s, which this VM must share a host with", id)
		}
	}
	return nil
}

// FitsResources rejects hosts that cannot give the VM what it needs without
// eating into their reserves: CPU, memory, disk I/O and network, and space
// on one volume for its disks. Resources a host reports no capacity for
// (zero) are not checked, except CPU and memory.
type FitsResources struct {
	Sizer Sizer
}

func (*FitsResources) Name() string { return "FitsResources" }

func (f *FitsResources) Filter(_ context.Context, vm *VM, h *Host) error {
	d := f.Sizer.Demand(vm, h)
	u := usable(h)
	for r := CPU; r < NumResources; r++ {
		if h.Capacity[r] == 0 && r != CPU && r != Memory {
			continue
		}
		if d[r] > u[r]-h.Used[r] {
			return Reject("%s", Explain(r, d[r], h))
		}
	}
	if vm.Disk > 0 {
		if !slices.ContainsFunc(h.Volumes, func(v Volume) bool { return v.Free >= vm.Disk }) {
			return Reject("storage: needs %s on one volume, the largest free is %s", bytesString(float64(vm.Disk)), bytesString(float64(largestFree(h.Volumes))))
		}
	}
	return nil
}

func largestFree(vs []Volume) int64 {
	var m int64
	for _, v := range vs {
		m = max(m, v.Free)
	}
	return m
}

// Explain says, for a person, how a demand of resource r compares with what
// h has: "memory: needs 8.0 GiB, 5.5 GiB free after 2.0 GiB reserve".
func Explain(r Resource, demand float64, h *Host) string {
	reserve := h.Reserve[r]
	if r == CPU {
		reserve *= h.Capacity[CPU]
	}
	free := h.Capacity[r] - h.Used[r] - reserve
	s := fmt.Sprintf("%s: needs %s, %s free", r, amount(r, demand), amount(r, max(free, 0)))
	if reserve > 0 {
		s += fmt.Sprintf(" after %s reserve", amount(r, reserve))
	}
	return s
}

// amount formats an amount of a resource in its unit.
func amount(r Resource, x float64) string {
	switch r {
	case CPU:
		if x >= 1000 {
			return fmt.Sprintf("%.1f GHz", x/1000)
		}
		return fmt.Sprintf("%.0f MHz", x)
	case Memory:
		return bytesString(x * (1 << 20))
	case DiskIOPS:
		return fmt.Sprintf("%.0f IOPS", x)
	case DiskMBps:
		return fmt.Sprintf("%.0f MB/s", x)
	case Network:
		return fmt.Sprintf("%.0f Mb/s", x)
	}
	return fmt.Sprint(x)
}

func bytesString(b float64) string {
	switch {
	case b >= 1<<40:
		return fmt.Sprintf("%.1f TiB", b/(1<<40))
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	}
	return fmt.Sprintf("%.0f KiB", b/(1<<10))
}

// Headroom scores a host by what it has left for its other VMs once it
// runs this one, per resource, weighted by Priority. Under LoadBalance more
// headroom scores higher (spread); under Consolidate less headroom scores
// higher (pack, so that other hosts empty). The goal is the host group's,
// from GroupGoals, or Goal.
type Headroom struct {
	Sizer      Sizer
	Goal       Goal
	GroupGoals map[string]Goal
	Priority   Vector // zero means DefaultPriority
}

func (*Headroom) Name() string { return "Headroom" }

func (s *Headroom) Score(_ context.Context, vm *VM, h *Host) (float64, error) {
	prio := s.Priority
	if prio == (Vector{}) {
		prio = DefaultPriority
	}
	d := s.Sizer.Demand(vm, h)
	u := usable(h)
	var sum, wsum float64
	for r := CPU; r < NumResources; r++ {
		if u[r] <= 0 || prio[r] == 0 {
			continue
		}
		left := min(max((u[r]-h.Used[r]-d[r])/u[r], 0), 1)
		sum += prio[r] * left
		wsum += prio[r]
	}
	if wsum == 0 {
		return 0, nil
	}
	score := sum / wsum
	if goals := (goals{def: s.Goal, byGroup: s.GroupGoals}); goals.of(h.Group) == Consolidate {
		score = 1 - score
	}
	return score, nil
}
