package libvirt_test

import (
	"errors"
	"io"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/libvirt"
)

// requireRFB connects to the VNC console at console (vnc://host:port) and
// requires the RFB server's greeting ("RFB 003.008\n"): the address is
// where QEMU serves the VM's console.
func requireRFB(t *testing.T, console string) {
	t.Helper()
	u, err := url.Parse(console)
	require.NoError(t, err, "Console %q", console)
	require.Equal(t, "vnc", u.Scheme, "Console %q", console)
	c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	require.NoError(t, err, "connect to the console %s", console)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	greeting := make([]byte, 12)
	_, err = io.ReadFull(c, greeting)
	require.NoError(t, err, "read the greeting of %s", console)
	require.Equal(t, "RFB ", string(greeting[:4]), "the greeting of %s: %q", console, greeting)
	t.Logf("%s: %q", console, greeting)
}

// TestConsole starts two guests and connects to each one's console at the
// address VMInfo reports; a stopped guest reports none.
func TestConsole(t *testing.T) {
	e := newEnv(t, false)
	d := e.dial(t, e.socket, nil)
	ctx := t.Context()
	spec := e.spec(t)
	var consoles []string
	for _, name := range []string{"libvirt-console-a-", "libvirt-console-b-"} {
		s := spec(name + randomSuffix(t))
		t.Cleanup(func() { deleteVM(d, s.Name) })
		vm, err := d.CreateVM(ctx, s)
		require.NoError(t, err)
		assert.Empty(t, vm.Console, "a stopped VM has no console")
		require.NoError(t, d.Start(ctx, vm.ID))
		vm, err = d.VM(ctx, vm.ID)
		require.NoError(t, err)
		require.Regexp(t, `^vnc://127\.0\.0\.1:[0-9]+$`, vm.Console)
		requireRFB(t, vm.Console)
		consoles = append(consoles, vm.Console)

		require.NoError(t, d.Pause(ctx, vm.ID))
		paused, err := d.VM(ctx, vm.ID)
		require.NoError(t, err)
		assert.Equal(t, vm.Console, paused.Console, "a paused VM keeps its console")
		require.NoError(t, d.Resume(ctx, vm.ID))
	}
	assert.NotEqual(t, consoles[0], consoles[1], "each VM has a console of its own")

	vms, err := d.VMs(ctx)
	require.NoError(t, err)
	for _, vm := range vms {
		if vm.State == hostapi.StateStopped {
			assert.Empty(t, vm.Console, "VMs: stopped VM %s", vm.Name)
		}
	}
	for _, c := range consoles {
		requireRFB(t, c) // the same after the other's start, pause and resume
	}
}

// TestConsoleListen defines VMs with the console on every address (reported
// at the loopback address of a local daemon), and without a console; Dial
// refuses a ConsoleListen that is no IP address.
func TestConsoleListen(t *testing.T) {
	e := newEnv(t, false)
	ctx := t.Context()
	spec := e.spec(t)
	for _, tc := range []struct{ listen, want string }{
		{"0.0.0.0", `^vnc://127\.0\.0\.1:[0-9]+$`},
		{libvirt.ConsoleNone, `^$`},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			d := e.dial(t, e.socket, &libvirt.Options{ConsoleListen: tc.listen})
			s := spec("libvirt-listen-" + randomSuffix(t))
			t.Cleanup(func() { deleteVM(d, s.Name) })
			vm, err := d.CreateVM(ctx, s)
			require.NoError(t, err)
			require.NoError(t, d.Start(ctx, vm.ID))
			vm, err = d.VM(ctx, vm.ID)
			require.NoError(t, err)
			require.Regexp(t, tc.want, vm.Console)
			if vm.Console != "" {
				requireRFB(t, vm.Console)
			}
			require.NoError(t, d.PowerOff(ctx, vm.ID))
			vm, err = d.VM(ctx, vm.ID)
			require.NoError(t, err)
			assert.Empty(t, vm.Console, "a stopped VM has no console")
		})
	}
	_, err := libvirt.Dial(ctx, e.socket, &libvirt.Options{ConsoleListen: "localhost"})
	requireOpError(t, err, hostapi.ErrInvalidSpec)
	assert.False(t, errors.Is(err, hostapi.ErrHostUnreachable))
}
