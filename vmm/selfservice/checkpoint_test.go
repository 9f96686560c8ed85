package selfservice_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/selfservice"
)

var (
	cpNames  = regexp.MustCompile(`<span class="cp-name">([^<]+)</span>`)
	consoles = regexp.MustCompile(`<code id="console">vnc://([^<:]+):(\d+)</code>`)
)

// Checkpoints and the console address on a VM's page, for roles that allow
// them.
func TestCheckpointAndConsole(t *testing.T) {
	p := newPortalWith(t, vmm.Config{}, portalOptions{DevActions: []string{"create", "stop", "checkpoint", "console"}})
	alice := p.signIn(t, "alice", "alice-pw")
	code, _, loc := alice.create("dev", "cp-vm")
	require.Equal(t, http.StatusSeeOther, code)
	p.wait(t, loc)
	id := p.vmID(t, "cp-vm")

	// The list and the VM's page name its host.
	hosts, err := p.m.Hosts(t.Context(), p.group)
	require.NoError(t, err)
	var hostName string
	for _, h := range hosts {
		if h.ID == vmsNamed(t, p, "cp-vm")[0].HostID {
			hostName = h.Name
		}
	}
	require.NotEmpty(t, hostName)
	_, list := alice.get("/")
	assert.Contains(t, list, "<td>"+hostName+"</td>")
	_, page := alice.get("/vms/" + id)
	assert.Contains(t, page, `<dd id="host">`+hostName+"</dd>")
	assert.Contains(t, page, "No checkpoints yet.")
	// The console's address is the one the host gives.
	info, err := p.m.VMInfo(t.Context(), id)
	require.NoError(t, err)
	require.NotEmpty(t, info.Console)
	m := consoles.FindStringSubmatch(page)
	require.NotNil(t, m, "a console address on the page")
	assert.Equal(t, info.Console, "vnc://"+m[1]+":"+m[2])
	assert.Contains(t, page, `id="act-checkpoint"`)
	code, _, loc = alice.post("/vms/"+id+"/checkpoint", url.Values{"csrf": {alice.csrf}, "name": {"first"}})
	require.Equal(t, http.StatusSeeOther, code)
	p.wait(t, loc)
	_, page = alice.get("/vms/" + id)
	assert.Equal(t, [][]string{{`<span class="cp-name">first</span>`, "first"}}, cpNames.FindAllStringSubmatch(page, -1))

	// Stop, then revert to the running checkpoint: running again.
	code, _, loc = alice.post("/vms/"+id+"/stop", url.Values{"csrf": {alice.csrf}})
	require.Equal(t, http.StatusSeeOther, code)
	p.wait(t, loc)
	_, page = alice.get("/vms/" + id)
	assert.NotContains(t, page, "Console", "no console while stopped")
	code, _, loc = alice.post("/vms/"+id+"/revert", url.Values{"csrf": {alice.csrf}, "name": {"first"}})
	require.Equal(t, http.StatusSeeOther, code)
	p.wait(t, loc)
	assert.Equal(t, "running", string(vmsNamed(t, p, "cp-vm")[0].State))

	// The same name again is refused (never silently the old one kept);
	// at most DefaultMaxCheckpoints; deleting one makes room.
	code, body, _ := alice.post("/vms/"+id+"/checkpoint", url.Values{"csrf": {alice.csrf}, "name": {"first"}})
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, body, "The VM has a checkpoint of that name")
	for i := 2; i <= selfservice.DefaultMaxCheckpoints; i++ {
		code, _, loc = alice.post("/vms/"+id+"/checkpoint", url.Values{"csrf": {alice.csrf}, "name": {fmt.Sprintf("cp%d", i)}})
		require.Equal(t, http.StatusSeeOther, code)
		p.wait(t, loc)
	}
	code, body, _ = alice.post("/vms/"+id+"/checkpoint", url.Values{"csrf": {alice.csrf}, "name": {"one-too-many"}})
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, body, "the most your role allows")
	code, _, loc = alice.post("/vms/"+id+"/delete-checkpoint", url.Values{"csrf": {alice.csrf}, "name": {"cp2"}})
	require.Equal(t, http.StatusSeeOther, code)
	p.wait(t, loc)
	_, page = alice.get("/vms/" + id)
	assert.Len(t, cpNames.FindAllStringSubmatch(page, -1), selfservice.DefaultMaxCheckpoints-1)
	assert.NotContains(t, page, `<span class="cp-name">cp2</span>`)

	// Refused: a bad name, a checkpoint the VM does not have, no token,
	// another user (bob, same role, not shared), a role without the action.
	code, body, _ = alice.post("/vms/"+id+"/checkpoint", url.Values{"csrf": {alice.csrf}, "name": {"../etc"}})
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, body, "A checkpoint name is")
	code, _, _ = alice.post("/vms/"+id+"/revert", url.Values{"csrf": {alice.csrf}, "name": {"never"}})
	assert.Equal(t, http.StatusNotFound, code)
	code, _, _ = alice.post("/vms/"+id+"/checkpoint", url.Values{"name": {"x"}})
	assert.Equal(t, http.StatusForbidden, code)
	bob := p.signIn(t, "bob", "bob-pw")
	code, _, _ = bob.post("/vms/"+id+"/revert", url.Values{"csrf": {bob.csrf}, "name": {"first"}})
	assert.Equal(t, http.StatusNotFound, code)
	code, _, _ = bob.post("/vms/"+id+"/checkpoint", url.Values{"csrf": {bob.csrf}, "name": {"bobs"}})
	assert.Equal(t, http.StatusNotFound, code)
	code, _, _ = bob.post("/vms/"+id+"/delete-checkpoint", url.Values{"csrf": {bob.csrf}, "name": {"first"}})
	assert.Equal(t, http.StatusNotFound, code)
	code, _, _ = alice.post("/vms/"+id+"/delete-checkpoint", url.Values{"csrf": {alice.csrf}, "name": {"never"}})
	assert.Equal(t, http.StatusNotFound, code)
	_, page = alice.get("/vms/" + id)
	assert.Len(t, cpNames.FindAllStringSubmatch(page, -1), selfservice.DefaultMaxCheckpoints-1, "nothing made or deleted by the refused requests")

	q := newPortal(t, vmm.Config{}) // role dev without "checkpoint"
	a2 := q.signIn(t, "alice", "alice-pw")
	code, _, loc = a2.create("dev", "no-cp")
	require.Equal(t, http.StatusSeeOther, code)
	q.wait(t, loc)
	id2 := q.vmID(t, "no-cp")
	_, page = a2.get("/vms/" + id2)
	assert.NotContains(t, page, "Checkpoints")
	assert.NotContains(t, page, "Console", "the role does not allow the console")
	code, _, _ = a2.post("/vms/"+id2+"/checkpoint", url.Values{"csrf": {a2.csrf}, "name": {"x"}})
	assert.Equal(t, http.StatusNotFound, code)
}
