package selfservice

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Actions a role may allow on its VMs.
const (
	ActCreate   = "create"
	ActStart    = "start"
	ActStop     = "stop"     // power off
	ActShutdown = "shutdown" // ask the guest
	ActPause    = "pause"    // and resume
	ActReboot   = "reboot"
	ActRemove   = "remove"
	// ActCheckpoint lets members record checkpoints of their VMs (at most
	// Role.MaxCheckpoints each), return a VM to one, and delete them.
	ActCheckpoint = "checkpoint"
	// ActConsole shows the address of a running VM's console, as its host
	// reports it. It grants nothing: who can open the console is up to
	// the host (the network that reaches the address, a console password).
	// See hostapi/libvirt's Options.ConsoleListen.
	ActConsole = "console"
)

var allActions = []string{ActCreate, ActStart, ActStop, ActShutdown, ActPause, ActReboot, ActRemove, ActCheckpoint, ActConsole}

// A Role says what its members may do, set by the administrator.
type Role struct {
	Name string
	// Members: users (by name) and groups (by name, as the Authenticator
	// reports them), compared without regard to case.
	Users, Groups []string
	// Templates members may create VMs from (library references), and
	// what each costs in quota points (1 when not listed).
	Templates []string
	Points    map[string]int
	// Actions members may take (Act...).
	Actions []string
	// HostGroup is the ID of the host group the role's VMs go to.
	HostGroup string
	// Quota caps the points of the VMs a member (or, when Shared, the
	// role) has; MaxVMs caps their number when Quota is 0 (each VM then
	// counts one point). 0 and 0 mean no cap.
	Quota, MaxVMs int
	// NamePattern is a regular expression VM names must match in full;
	// "" means letters, digits and '-', 3 to 32 characters.
	NamePattern string
	// Shared makes the role's VMs belong to the role: every member sees
	// and acts on all of them, and the quota is the role's. Otherwise a
	// member sees only their own.
	Shared bool
	// MaxCheckpoints caps the checkpoints of each VM with ActCheckpoint
	// (they hold disk and memory state on the host); 0 means
	// DefaultMaxCheckpoints.
	MaxCheckpoints int

	names *regexp.Regexp
}

const defaultNamePattern = `[A-Za-z0-9][A-Za-z0-9-]{2,31}`

// DefaultMaxCheckpoints is the checkpoints a VM may have when
// Role.MaxCheckpoints is 0.
const DefaultMaxCheckpoints = 5

func (r *Role) check() error {
	if r.Name == "" {
		return fmt.Errorf("selfservice: a role without a name")
	}
	if r.HostGroup == "" {
		return fmt.Errorf("selfservice: role %s: HostGroup is required", r.Name)
	}
	for _, a := range r.Actions {
		if !slices.Contains(allActions, a) {
			return fmt.Errorf("selfservice: role %s: unknown action %q", r.Name, a)
		}
	}
	for t, p := range r.Points {
		if p < 0 {
			return fmt.Errorf("selfservice: role %s: negative points for %s", r.Name, t)
		}
	}
	if r.Quota < 0 || r.MaxVMs < 0 || r.MaxCheckpoints < 0 {
		return fmt.Errorf("selfservice: role %s: negative quota", r.Name)
	}
	if r.MaxCheckpoints == 0 {
		r.MaxCheckpoints = DefaultMaxCheckpoints
	}
	pat := r.NamePattern
	if pat == "" {
		pat = defaultNamePattern
	}
	re, err := regexp.Compile(`^(?:` + pat + `)$`)
	if err != nil {
		return fmt.Errorf("selfservice: role %s: NamePattern: %w", r.Name, err)
	}
	r.names = re
	return nil
}

func (r *Role) has(id Identity) bool {
	for _, u := range r.Users {
		if strings.EqualFold(u, id.User) {
			return true
		}
	}
	for _, g := range r.Groups {
		for _, h := range id.Groups {
			if strings.EqualFold(g, h) {
				return true
			}
		}
	}
	return false
}

func (r *Role) allows(action string) bool { return slices.Contains(r.Actions, action) }

func (r *Role) template(ref string) bool { return slices.Contains(r.Templates, ref) }

// cost is what a VM of template counts against the quota: its Points, or
// one VM when the cap is MaxVMs.
func (r *Role) cost(template string) int {
	if r.Quota == 0 {
		return 1
	}
	if p, ok := r.Points[template]; ok {
		return p
	}
	return 1
}

// limit is the points cap of CreateVMWithinQuota, 0 for none.
func (r *Role) limit() int {
	if r.Quota > 0 {
		return r.Quota
	}
	return r.MaxVMs
}

// owner is whom the role's VMs made by user belong to.
func (r *Role) owner(user string) string {
	if r.Shared {
		return "role:" + r.Name
	}
	return user
}
