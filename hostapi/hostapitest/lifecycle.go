package hostapitest

import (
	"net/url"
	"slices"
	"strconv"
	"testing"

	"github.com/vmmkit/vmmkit/hostapi"
)

func testHost(t *testing.T, s *Setup) {
	h, err := s.Driver.Host(testCtx(t))
	must(t, "Host", err)
	if h.ID == "" || h.Name == "" || h.Hypervisor == "" {
		t.Errorf("Host: got ID %q, Name %q, Hypervisor %q; want all set", h.ID, h.Name, h.Hypervisor)
	}
	if h.CPUCores <= 0 || h.CPUMHz < 0 {
		t.Errorf("Host: got %d cores of %v MHz, want cores and a clock not below 0", h.CPUCores, h.CPUMHz)
	}
	if h.CPUUsed < 0 || h.CPUMHz > 0 && h.CPUUsed > h.CPUTotal() {
		t.Errorf("Host: got CPUUsed %v MHz, want it within 0..%v", h.CPUUsed, h.CPUTotal())
	}
	if h.MemoryTotal <= 0 || h.MemoryFree < 0 || h.MemoryFree > h.MemoryTotal {
		t.Errorf("Host: got memory %d free of %d, want 0 <= free <= total, total > 0", h.MemoryFree, h.MemoryTotal)
	}
	if len(h.Formats) == 0 {
		t.Error("Host: got no Formats, want the formats the host runs VMs from")
	}
	if s.Pool != "" {
		i := slices.IndexFunc(h.Pools, func(p hostapi.Pool) bool { return p.Name == s.Pool })
		switch {
		case i < 0:
			t.Errorf("Host: got pools %+v, want one named %q", h.Pools, s.Pool)
		case h.Pools[i].Capacity <= 0 || h.Pools[i].Free < 0 || h.Pools[i].Free > h.Pools[i].Capacity:
			t.Errorf("Host: got pool %+v, want 0 <= Free <= Capacity, Capacity > 0", h.Pools[i])
		}
	}
	for _, n := range s.Spec("hostapitest-spec").NICs {
		if !slices.Contains(h.Networks, n.Network) {
			t.Errorf("Host: got networks %v, want %q, which Spec uses", h.Networks, n.Network)
		}
	}
}

// testLifecycle takes one VM through every valid transition, checking
// the state after each and the events at the end.
func testLifecycle(t *testing.T, s *Setup) {
	d := s.Driver
	events := record(t, d)
	spec := s.Spec(newName("lifecycle"))
	cleanupVM(t, s, spec.Name)
	var id, console string
	want := []hostapi.EventKind{}
	steps := []struct {
		name string
		skip bool
		run  func(t *testing.T)
	}{
		{"Create", false, func(t *testing.T) {
			vm, err := d.CreateVM(testCtx(t), spec)
			must(t, "CreateVM", err)
			id = vm.ID
			want = append(want, hostapi.EventDefined)
			if vm.ID == "" || vm.Name != spec.Name || vm.State != hostapi.StateStopped || vm.VCPUs != spec.VCPUs || vm.Memory != spec.Memory {
				t.Errorf("CreateVM: got %+v, want an ID, name %q, stopped, %d vCPUs, %d bytes", vm, spec.Name, spec.VCPUs, spec.Memory)
			}
			for _, key := range []string{vm.ID, vm.Name} {
				got, err := d.VM(testCtx(t), key)
				must(t, "VM("+key+")", err)
				if got.ID != vm.ID || got.Name != vm.Name {
					t.Errorf("VM(%s): got %s %s, want %s %s", key, got.ID, got.Name, vm.ID, vm.Name)
				}
			}
			vms, err := d.VMs(testCtx(t))
			must(t, "VMs", err)
			if !slices.ContainsFunc(vms, func(v hostapi.VMInfo) bool { return v.ID == vm.ID }) {
				t.Errorf("VMs: does not list %s", vm.Name)
			}
			if vm.Console != "" {
				t.Errorf("CreateVM: got Console %q for a stopped VM, want \"\"", vm.Console)
			}
			wantConsole(t, d, id, false)
		}},
		{"Start", false, func(t *testing.T) {
			must(t, "Start", d.Start(testCtx(t), id))
			want = append(want, hostapi.EventStarted)
			wantState(t, d, id, hostapi.StateRunning)
			console = wantConsole(t, d, id, true)
		}},
		{"Stats", false, func(t *testing.T) {
			st, err := d.Stats(testCtx(t), id)
			must(t, "Stats", err)
			if st.Time.IsZero() || st.CPUTime < 0 || st.CPUMHz < 0 || st.MemoryUsed < 0 || st.MemoryUsed > spec.Memory {
				t.Errorf("Stats: got %+v, want a time, CPU not below 0, 0 <= MemoryUsed <= %d", st, spec.Memory)
			}
		}},
		{"Pause", !d.Supports(hostapi.Pause), func(t *testing.T) {
			must(t, "Pause", d.Pause(testCtx(t), id))
			want = append(want, hostapi.EventPaused)
			wantState(t, d, id, hostapi.StatePaused)
		}},
		{"Resume", !d.Supports(hostapi.Pause), func(t *testing.T) {
			must(t, "Resume", d.Resume(testCtx(t), id))
			want = append(want, hostapi.EventResumed)
			wantState(t, d, id, hostapi.StateRunning)
		}},
		{"Reboot", false, func(t *testing.T) {
			must(t, "Reboot", d.Reboot(testCtx(t), id))
			wantState(t, d, id, hostapi.StateRunning)
			if got := wantConsole(t, d, id, true); got != console {
				t.Errorf("VM %s: got Console %q after Reboot, want %q, the one it had since Start", id, got, console)
			}
		}},
		{"PowerOff", false, func(t *testing.T) {
			must(t, "PowerOff", d.PowerOff(testCtx(t), id))
			want = append(want, hostapi.EventStopped)
			wantState(t, d, id, hostapi.StateStopped)
			wantConsole(t, d, id, false)
		}},
		{"Shutdown", false, func(t *testing.T) {
			must(t, "Start", d.Start(testCtx(t), id))
			shutdown(t, s, d, id)
			want = append(want, hostapi.EventStarted, hostapi.EventStopped)
		}},
		{"Delete", false, func(t *testing.T) {
			must(t, "DeleteVM", d.DeleteVM(testCtx(t), id, nil))
			want = append(want, hostapi.EventDeleted)
			wantGone(t, d, id)
			wantGone(t, d, spec.Name)
		}},
		{"Events", events == nil, func(t *testing.T) {
			events.expect(t, id, want...)
		}},
	}
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			if st.skip {
				t.Skip("not supported by the driver")
			}
			st.run(t)
		})
		if !ok {
			return // the later steps depend on this one
		}
	}
}

// testInvalidTransitions puts one VM in each state and checks that every
// operation that does not apply there fails with ErrInvalidState and
// changes nothing.
func testInvalidTransitions(t *testing.T, s *Setup) {
	d := s.Driver
	vm := newVM(t, s, "invalid")
	id := vm.ID
	ops := map[string]func(t *testing.T) error{
		"Start":    func(t *testing.T) error { return d.Start(testCtx(t), id) },
		"Shutdown": func(t *testing.T) error { return d.Shutdown(testCtx(t), id) },
		"PowerOff": func(t *testing.T) error { return d.PowerOff(testCtx(t), id) },
		"Pause":    func(t *testing.T) error { return d.Pause(testCtx(t), id) },
		"Resume":   func(t *testing.T) error { return d.Resume(testCtx(t), id) },
		"Reboot":   func(t *testing.T) error { return d.Reboot(testCtx(t), id) },
		"DeleteVM": func(t *testing.T) error { return d.DeleteVM(testCtx(t), id, &hostapi.DeleteOptions{KeepDisks: true}) },
	}
	cases := []struct {
		state hostapi.State
		enter func(t *testing.T) // from the previous case's state
		skip  bool
		ops   []string
	}{
		{hostapi.StateStopped, func(*testing.T) {}, false, []string{"Shutdown", "PowerOff", "Pause", "Resume", "Reboot"}},
		{hostapi.StateRunning, func(t *testing.T) { must(t, "Start", d.Start(testCtx(t), id)) }, false, []string{"Start", "Resume", "DeleteVM"}},
		{hostapi.StatePaused, func(t *testing.T) { must(t, "Pause", d.Pause(testCtx(t), id)) }, !d.Supports(hostapi.Pause), []string{"Start", "Pause", "DeleteVM"}},
	}
	for _, tc := range cases {
		ok := t.Run(tc.state.String(), func(t *testing.T) {
			if tc.skip {
				t.Skip("not supported by the driver")
			}
			tc.enter(t)
			wantState(t, d, id, tc.state)
			for _, op := range tc.ops {
				if (op == "Pause" || op == "Resume") && !d.Supports(hostapi.Pause) {
					continue
				}
				if op == "Shutdown" && !d.Supports(hostapi.GuestShutdown) {
					continue
				}
				t.Run(op, func(t *testing.T) {
					wantErr(t, op+" of a "+tc.state.String()+" VM", ops[op](t), hostapi.ErrInvalidState)
					wantState(t, d, id, tc.state)
				})
			}
		})
		if !ok {
			return
		}
	}
}

// wantConsole checks VM id's Console, as VM and VMs report it: a URL
// vnc://host:port while the VM runs, "" when it is stopped. It returns the
// console.
func wantConsole(t *testing.T, d hostapi.Driver, id string, running bool) string {
	t.Helper()
	vm, err := d.VM(testCtx(t), id)
	must(t, "VM", err)
	vms, err := d.VMs(testCtx(t))
	must(t, "VMs", err)
	if i := slices.IndexFunc(vms, func(v hostapi.VMInfo) bool { return v.ID == vm.ID }); i >= 0 && vms[i].Console != vm.Console {
		t.Errorf("VMs: got Console %q for %s, VM says %q", vms[i].Console, id, vm.Console)
	}
	if !running {
		if vm.Console != "" {
			t.Errorf("VM %s: got Console %q while it is %v, want \"\"", id, vm.Console, vm.State)
		}
		return vm.Console
	}
	u, err := url.Parse(vm.Console)
	if err != nil || u.Scheme != "vnc" || u.Hostname() == "" {
		t.Errorf("VM %s: got Console %q while it runs, want a URL vnc://host:port (%v)", id, vm.Console, err)
		return vm.Console
	}
	if p, err := strconv.Atoi(u.Port()); err != nil || p <= 0 || p > 65535 {
		t.Errorf("VM %s: got Console %q while it runs, want a port in it", id, vm.Console)
	}
	return vm.Console
}
