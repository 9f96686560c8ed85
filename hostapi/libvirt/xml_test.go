package libvirt

import (
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/vmmkit/vmmkit/hostapi"
)

// TestConsoleURL reads consoles from live domain XML as libvirt writes it.
func TestConsoleURL(t *testing.T) {
	addr := func(a string) []libvirtxml.DomainGraphicListener {
		return []libvirtxml.DomainGraphicListener{{Address: &libvirtxml.DomainGraphicListenerAddress{Address: a}}}
	}
	vnc := func(port int, listen string, l []libvirtxml.DomainGraphicListener) []libvirtxml.DomainGraphic {
		return []libvirtxml.DomainGraphic{{VNC: &libvirtxml.DomainGraphicVNC{Port: port, AutoPort: "yes", Listen: listen, Listeners: l}}}
	}
	for _, tc := range []struct {
		name     string
		graphics []libvirtxml.DomainGraphic
		remote   string
		want     string
	}{
		{"loopback", vnc(5901, "127.0.0.1", addr("127.0.0.1")), "", "vnc://127.0.0.1:5901"},
		{"address", vnc(5902, "", addr("10.0.0.2")), "kvm1.example", "vnc://10.0.0.2:5902"},
		{"IPv6", vnc(5903, "", addr("fd00::2")), "", "vnc://[fd00::2]:5903"},
		{"any, local", vnc(5900, "0.0.0.0", addr("0.0.0.0")), "", "vnc://127.0.0.1:5900"},
		{"any IPv6, local", vnc(5900, "::", addr("::")), "", "vnc://[::1]:5900"},
		{"any, remote", vnc(5900, "0.0.0.0", addr("0.0.0.0")), "kvm1.example", "vnc://kvm1.example:5900"},
		{"any IPv6, remote by address", vnc(5900, "::", addr("::")), "fd00::1", "vnc://[fd00::1]:5900"},
		{"network", vnc(5904, "", []libvirtxml.DomainGraphicListener{{Network: &libvirtxml.DomainGraphicListenerNetwork{Network: "lan", Address: "192.168.1.5"}}}), "", "vnc://192.168.1.5:5904"},
		{"listen attribute only", vnc(5905, "192.168.1.6", nil), "", "vnc://192.168.1.6:5905"},
		{"no port yet", vnc(-1, "127.0.0.1", addr("127.0.0.1")), "", ""},
		{"unix socket", vnc(0, "", []libvirtxml.DomainGraphicListener{{Socket: &libvirtxml.DomainGraphicListenerSocket{Socket: "/run/vnc.sock"}}}), "", ""},
		{"SPICE only", []libvirtxml.DomainGraphic{{Spice: &libvirtxml.DomainGraphicSpice{Port: 5930}}}, "", ""},
		{"no graphics", nil, "", ""},
	} {
		if got := consoleURL(tc.graphics, tc.remote); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestVMInfoConsole reports a console only while the domain runs (or is
// paused or shutting down): a stopped domain's XML may keep a fixed port.
func TestVMInfoConsole(t *testing.T) {
	const doc = `<domain type="kvm"><name>web</name><uuid>b3a1c7e0-6a0e-4b8e-9d39-5f2b8a1e0c11</uuid>
<devices><graphics type="vnc" port="5907" autoport="no" listen="127.0.0.1"><listen type="address" address="127.0.0.1"/></graphics></devices></domain>`
	for state, want := range map[hostapi.State]string{
		hostapi.StateRunning:  "vnc://127.0.0.1:5907",
		hostapi.StatePaused:   "vnc://127.0.0.1:5907",
		hostapi.StateShutdown: "vnc://127.0.0.1:5907",
		hostapi.StateStopped:  "",
		hostapi.StateCrashed:  "",
	} {
		vm, err := vmInfo(doc, state, "")
		if err != nil {
			t.Fatal(err)
		}
		if vm.Console != want {
			t.Errorf("%v: got Console %q, want %q", state, vm.Console, want)
		}
	}
}

// TestRemote takes the host name for consoles on every address from the
// URIs of remote daemons only.
func TestRemote(t *testing.T) {
	for uri, want := range map[string]string{
		"/run/libvirt/libvirt-sock":            "",
		"qemu:///system":                       "",
		"qemu+unix:///system?socket=/x/sock":   "",
		"qemu+tcp://kvm1.example/system":       "kvm1.example",
		"qemu+tls://kvm2.example:16514/system": "kvm2.example",
		"qemu+tcp://[fd00::1]:16509/system":    "fd00::1",
	} {
		tg, err := parseTarget(uri, &Options{})
		if err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		if tg.remote != want {
			t.Errorf("%s: got remote %q, want %q", uri, tg.remote, want)
		}
	}
}
