package sim_test

import (
	"testing"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/sim"
)

// TestConsole gives each running VM of a host a display of its own, the
// lowest free, kept while it runs and freed when it stops, leaves or is
// deleted; a VM migrated while running gets one on its new host.
func TestConsole(t *testing.T) {
	_, a, b := twoHosts(t, sim.Config{})
	ctx := t.Context()
	console := func(h *sim.Host, id string) string {
		t.Helper()
		vm, err := h.VM(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return vm.Console
	}
	want := func(h *sim.Host, id, c string) {
		t.Helper()
		if got := console(h, id); got != c {
			t.Errorf("VM %s on %s: got Console %q, want %q", id, h.Name(), got, c)
		}
	}
	do := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	var ids []string
	for _, name := range []string{"vm0", "vm1", "vm2"} {
		vm, err := a.CreateVM(ctx, tinySpec(name))
		do("CreateVM", err)
		if vm.Console != "" {
			t.Errorf("CreateVM: got Console %q, want none while stopped", vm.Console)
		}
		do("Start", a.Start(ctx, vm.ID))
		ids = append(ids, vm.ID)
	}
	want(a, ids[0], "vnc://a:5900")
	want(a, ids[1], "vnc://a:5901")
	want(a, ids[2], "vnc://a:5902")

	do("Pause", a.Pause(ctx, ids[1]))
	want(a, ids[1], "vnc://a:5901")
	do("Resume", a.Resume(ctx, ids[1]))
	do("Reboot", a.Reboot(ctx, ids[1]))
	want(a, ids[1], "vnc://a:5901")

	do("PowerOff", a.PowerOff(ctx, ids[0]))
	want(a, ids[0], "")
	want(a, ids[1], "vnc://a:5901") // the others keep theirs
	do("Start", a.Start(ctx, ids[0]))
	want(a, ids[0], "vnc://a:5900") // the lowest free again

	do("Migrate", a.Migrate(ctx, ids[1], b, &hostapi.MigrateOptions{Live: true}))
	want(b, ids[1], "vnc://b:5900")
	vm, err := a.CreateVM(ctx, tinySpec("vm3"))
	do("CreateVM", err)
	do("Start", a.Start(ctx, vm.ID))
	want(a, vm.ID, "vnc://a:5901") // freed by the migration

	do("PowerOff", b.PowerOff(ctx, ids[1]))
	do("Migrate", b.Migrate(ctx, ids[1], a, nil))
	want(a, ids[1], "") // stopped, it has none there

	vms, err := a.VMs(ctx)
	do("VMs", err)
	for _, v := range vms {
		if got := console(a, v.ID); v.Console != got {
			t.Errorf("VMs: got Console %q for %s, VM says %q", v.Console, v.Name, got)
		}
	}
}
