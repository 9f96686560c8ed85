package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/placement"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// Labels the manager puts on the VMs it defines.
const (
	LabelVM  = "vmmkit.vm"  // the VM's ID in the inventory
	LabelJob = "vmmkit.job" // the job that created it
)

// VMSpec is what CreateVM makes.
type VMSpec struct {
	// Name of the VM, unique in its group: letters, digits, '-', '_' and
	// '.', up to 63 characters, starting with a letter or digit.
	Name string
	// Group is the ID of the host group the VM goes to. Required.
	Group string
	// Template is a library reference (ID, path or name) of a template:
	// its hardware profile and disks make the VM. Or else:
	Template string
	// Disk is a library reference of a disk image to make the VM from,
	// with VCPUs and MemoryMiB.
	Disk string
	// VCPUs and MemoryMiB, when set, replace the template's.
	VCPUs     int
	MemoryMiB int64
	// Host, when set, is the ID of the host to use instead of the best
	// rated one; it must still pass placement's filters.
	Host string
	// Differencing makes each disk a differencing disk over a copy of the
	// image the host keeps (copied once per host), instead of a full copy.
	Differencing bool
	// NoStart leaves the VM stopped.
	NoStart bool

	// Owner is whom the VM belongs to, and User who asks ("" means Owner).
	Owner, User string
	// Points the VM counts for its owner; with QuotaLimit above zero the
	// VM is refused (store.ErrQuota) when the owner's points would exceed
	// it, atomically with other creations.
	Points, QuotaLimit int
}

var vmName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// createInput is the input of a create-vm job.
type createInput struct {
	VMSpec
	VMID       string `json:"vm_id"`
	ConvertJob string `json:"convert_job,omitempty"` // the convert-physical job that queued it
}

// CreateResult is the result of a create-vm job.
type CreateResult struct {
	VMID     string      `json:"vm_id"`
	HostID   string      `json:"host_id"`
	HostName string      `json:"host_name"`
	Stars    float64     `json:"stars"`
	Ratings  []HostStars `json:"ratings"` // the best rated hosts, best first
	Disks    []string    `json:"disks"`
	State    string      `json:"state"`
}

// HostStars is one host's rating for a VM.
type HostStars struct {
	HostID string  `json:"host_id"`
	Name   string  `json:"name"`
	Stars  float64 `json:"stars"`
	Reason string  `json:"reason,omitempty"` // why it was rejected
}

// Steps of a create-vm job.
var createSteps = []string{"reserve", "place", "disks", "define", "start"}

// CreateVM queues a job that makes a VM: it reserves the name in the
// inventory, rates the hosts of the group, copies the template's disks to
// the chosen host from the library replica nearest it (or makes
// differencing disks over a copy the host keeps), defines the VM and
// starts it. It returns the queued job (its Input carries the new VM's ID
// as "vm_id"); Wait for it, or Watch it. A spec that cannot work is refused
// here with store.ErrInvalid; what is found later (a name taken, no host
// that fits, a template's disk missing) fails the job with the reason, and
// a failed or cancelled job leaves neither a record nor anything on a host.
func (m *Manager) CreateVM(ctx context.Context, spec VMSpec) (store.Job, error) {
	return m.submitCreateVM(ctx, spec, "")
}

// refuse is the error of a request refused before any job: an *OpError
// wrapping store.ErrInvalid.
func refuse(op, id, format string, args ...any) (store.Job, error) {
	return store.Job{}, &store.OpError{Op: op, ID: id, Err: fmt.Errorf("%w: "+format, append([]any{store.ErrInvalid}, args...)...)}
}

func (m *Manager) submitCreateVM(ctx context.Context, spec VMSpec, convertJob string) (store.Job, error) {
	bad := func(format string, args ...any) (store.Job, error) {
		return refuse("create VM", spec.Name, format, args...)
	}
	switch {
	case !vmName.MatchString(spec.Name):
		return bad("name %q: use up to 63 letters, digits, '.', '-' and '_', starting with a letter or digit", spec.Name)
	case spec.Group == "":
		return bad("Group is required")
	case spec.Template == "" && spec.Disk == "":
		return bad("a Template or a Disk is required")
	case spec.Template != "" && spec.Disk != "":
		return bad("give a Template or a Disk, not both")
	case spec.Disk != "" && (spec.VCPUs <= 0 || spec.MemoryMiB <= 0):
		return bad("a VM made from a disk needs VCPUs and MemoryMiB")
	case spec.VCPUs < 0 || spec.MemoryMiB < 0 || spec.Points < 0 || spec.QuotaLimit < 0:
		return bad("negative VCPUs, MemoryMiB, Points or QuotaLimit")
	case m.cfg.Library == nil:
		return bad("the manager has no library (Config.Library)")
	}
	if _, err := m.st.Group(ctx, spec.Group); err != nil {
		return store.Job{}, err
	}
	user := spec.User
	if user == "" {
		user = spec.Owner
	}
	return m.Submit(ctx, KindCreateVM, user, createInput{VMSpec: spec, VMID: store.NewID(), ConvertJob: convertJob}, createSteps...)
}

// vmPlan is what the place step decided.
type vmPlan struct {
	HostID   string      `json:"host_id"`
	HostName string      `json:"host_name"`
	Site     string      `json:"site"`
	Pool     string      `json:"pool"`
	Stars    float64     `json:"stars"`
	Ratings  []HostStars `json:"ratings"`
	VCPUs    int         `json:"vcpus"`
	Memory   int64       `json:"memory_mib"`
	Disks    []string    `json:"disks"` // library object IDs
	NICs     []string    `json:"nics"`
	Boot     []string    `json:"boot"`
	// Demand is what the VM takes on its host, counted there while it is
	// being made.
	Demand placement.Vector `json:"demand"`
}

func (m *Manager) runCreateVM(ctx context.Context, r *Run) error {
	var in createInput
	if err := r.Input(&in); err != nil {
		return err
	}
	// created: the disks and VM this attempt or an earlier one made, for
	// taking them back when the job fails or is cancelled.
	var plan vmPlan
	err := m.createVM(ctx, r, in, &plan)
	if err == nil || Interrupted(ctx) {
		return err
	}
	// Failed or cancelled: take back everything, the record last, so that
	// a Retry starts clean. The steps are recorded as undone first: when
	// that cannot be written (the store is full or gone), nothing is taken
	// back, and the attempt that resumes the job finds what this one did
	// where its record says.
	r.undone()
	if serr := r.save(true); serr != nil {
		return fmt.Errorf("%w; not taken back, since the job's record cannot be written: %w", err, serr)
	}
	cctx, cancel := m.callCtx(context.WithoutCancel(ctx))
	defer cancel()
	if uerr := m.undoCreate(cctx, in, plan); uerr != nil {
		// The host did not answer: the record says so (VMFailed) and
		// keeps what to take back, which the leader does when it next
		// reaches the host (reconcile).
		m.log.Error("taking back a failed VM creation", "vm", in.Name, "err", uerr)
		undo, _ := json.Marshal(failedCreate{Input: in, Plan: plan})
		if _, serr := m.updateVM(cctx, in.VMID, func(vm *store.VM) bool {
			vm.State, vm.HostID, vm.Spec = VMFailed, plan.HostID, undo
			return true
		}); serr != nil && !errors.Is(serr, store.ErrNotFound) {
			m.log.Error("recording a failed VM creation", "vm", in.Name, "err", serr)
		}
		return fmt.Errorf("%w; taking it back failed, and is left to the host's next sync: %w", err, uerr)
	}
	return err
}

// failedCreate is the Spec of a VMFailed record: what to take back.
type failedCreate struct {
	Input createInput `json:"input"`
	Plan  vmPlan      `json:"plan"`
}

// finishUndo takes back a failed creation whose host did not answer then.
func (m *Manager) finishUndo(ctx context.Context, rec store.VM) error {
	var fc failedCreate
	if err := json.Unmarshal(rec.Spec, &fc); err != nil || fc.Input.VMID != rec.ID {
		return fmt.Errorf("VM %s is %s without what to take back: %v", rec.Name, VMFailed, err)
	}
	if err := m.undoCreate(ctx, fc.Input, fc.Plan); err != nil {
		return err
	}
	m.log.Info("a failed VM creation taken back", "vm", rec.Name)
	return nil
}

// Interrupted reports whether a job stops because its manager is closing
// or lost the job to another: it will be resumed, and must not take back
// what it did.
func Interrupted(ctx context.Context) bool {
	c := context.Cause(ctx)
	return errors.Is(c, errClosing) || errors.Is(c, errLost)
}

func (m *Manager) createVM(ctx context.Context, r *Run, in createInput, plan *vmPlan) error {
	// reserve: the record holds the name from now on.
	if _, err := Do(ctx, r, "reserve", func(ctx context.Context, resumed bool) (string, error) {
		if resumed {
			if _, err := m.st.VM(ctx, in.VMID); err == nil {
				return in.VMID, nil
			}
		}
		spec, _ := json.Marshal(in.VMSpec)
		rec := store.VM{ID: in.VMID, Name: in.Name, GroupID: in.Group, Template: in.Template, Owner: in.Owner,
			State: VMCreating, Points: in.Points, Spec: spec}
		var err error
		if in.QuotaLimit > 0 {
			_, err = m.st.CreateVMWithinQuota(ctx, rec, in.QuotaLimit)
		} else {
			_, err = m.st.CreateVM(ctx, rec)
		}
		if errors.Is(err, store.ErrExists) {
			return "", fmt.Errorf("a VM named %q exists in the group: %w", in.Name, err)
		}
		return in.VMID, err
	}); err != nil {
		return err
	}

	// The place step counts the VM on its host (pending) while it is
	// being made, so that placements meanwhile see it.
	p, err := Do(ctx, r, "place", func(ctx context.Context, _ bool) (vmPlan, error) {
		return m.placeVM(ctx, in)
	})
	*plan = p
	defer m.dropPending(p.HostID, in.Name)
	if err != nil {
		return err
	}
	m.addPending(p.HostID, in.Name, p.Demand) // again when the step was done before a restart
	if _, err := m.updateVM(ctx, in.VMID, func(vm *store.VM) bool {
		if vm.HostID == p.HostID {
			return false
		}
		vm.HostID = p.HostID
		return true
	}); err != nil {
		return err
	}
	drv, err := m.driver(ctx, p.HostID)
	if err != nil {
		return err
	}

	disks, err := Do(ctx, r, "disks", func(ctx context.Context, resumed bool) ([]string, error) {
		return m.deployDisks(ctx, r, in, p, drv, resumed)
	})
	if err != nil {
		return err
	}

	info, err := Do(ctx, r, "define", func(ctx context.Context, resumed bool) (hostapi.VMInfo, error) {
		spec := hostapi.VMSpec{
			Name: in.Name, VCPUs: p.VCPUs, Memory: p.Memory << 20, Boot: p.Boot,
			Labels: map[string]string{LabelVM: in.VMID, LabelJob: r.Job().ID},
		}
		for _, d := range disks {
			spec.Disks = append(spec.Disks, hostapi.DiskRef{Pool: p.Pool, Name: d})
		}
		for _, n := range p.NICs {
			spec.NICs = append(spec.NICs, hostapi.NIC{Network: n})
		}
		cctx, cancel := m.callCtx(ctx)
		defer cancel()
		v, err := drv.CreateVM(cctx, spec)
		if errors.Is(err, hostapi.ErrExists) || (err != nil && resumed) {
			// Ours from an earlier attempt, or somebody else's.
			if have, lerr := drv.VM(cctx, in.Name); lerr == nil {
				if have.Labels[LabelVM] == in.VMID {
					return *have, nil
				}
				return hostapi.VMInfo{}, fmt.Errorf("host %s already has a VM named %q that is not this one: %w", p.HostName, in.Name, err)
			}
		}
		if err != nil {
			return hostapi.VMInfo{}, err
		}
		return *v, nil
	})
	if err != nil {
		return err
	}

	state := info.State
	if !in.NoStart {
		state, err = Do(ctx, r, "start", func(ctx context.Context, resumed bool) (hostapi.State, error) {
			cctx, cancel := m.callCtx(ctx)
			defer cancel()
			err := drv.Start(cctx, info.ID)
			if err != nil && errors.Is(err, hostapi.ErrInvalidState) {
				if v, lerr := drv.VM(cctx, info.ID); lerr == nil && v.State == hostapi.StateRunning {
					return v.State, nil
				}
			}
			if err != nil {
				return 0, err
			}
			return hostapi.StateRunning, nil
		})
		if err != nil {
			return err
		}
	}
	m.forgetHost(p.HostID)
	if _, err := m.updateVM(ctx, in.VMID, func(vm *store.VM) bool {
		vm.HostID, vm.State = p.HostID, state.String()
		return true
	}); err != nil {
		return err
	}
	return r.SetResult(CreateResult{VMID: in.VMID, HostID: p.HostID, HostName: p.HostName, Stars: p.Stars,
		Ratings: p.Ratings, Disks: disks, State: state.String()})
}

// diskName is the name of a VM's disk i on its host.
func diskName(in createInput, i int) string {
	return fmt.Sprintf("%s%d", diskPrefix(in.Name, in.VMID), i)
}

// diskPrefix begins the names of the disks CreateVM makes for a VM.
func diskPrefix(name, vmID string) string {
	return fmt.Sprintf("%s-%s-disk", name, vmID[:min(8, len(vmID))])
}

func (m *Manager) deployDisks(ctx context.Context, r *Run, in createInput, p vmPlan, drv hostapi.Driver, resumed bool) ([]string, error) {
	lib := m.cfg.Library
	var names []string
	var total, done int64
	objs := make([]*library.Object, len(p.Disks))
	for i, id := range p.Disks {
		o, err := lib.Object(id)
		if err != nil {
			return nil, fmt.Errorf("disk %d of the VM: %w", i, err)
		}
		objs[i] = o
		total += o.Size
	}
	if resumed {
		// An earlier attempt may have got further than it recorded: once
		// the VM is defined, its disks were complete.
		cctx, cancel := m.callCtx(ctx)
		v, err := drv.VM(cctx, in.Name)
		cancel()
		if err == nil && v.Labels[LabelVM] == in.VMID {
			for i := range objs {
				names = append(names, diskName(in, i))
			}
			return names, nil
		}
	}
	for i, o := range objs {
		name := diskName(in, i)
		base := done
		if resumed {
			// An interrupted copy may have left a partial disk (or the
			// driver's leftovers) under the name: nothing uses it yet.
			cctx, cancel := m.callCtx(ctx)
			err := drv.DeleteDisk(cctx, p.Pool, name)
			cancel()
			if err != nil && !errors.Is(err, hostapi.ErrNotFound) {
				return names, fmt.Errorf("removing what an interrupted copy of %s left on host %s: %w", o.Name, p.HostName, err)
			}
		}
		_, err := lib.Deploy(ctx, o, drv, p.Site, hostapi.DiskSpec{Pool: p.Pool, Name: name}, &library.DeployOptions{
			Differencing: in.Differencing,
			Progress: func(d, _ int64) {
				if total > 0 {
					r.Progress(float64(base+d) / float64(total))
				}
			},
		})
		if err != nil {
			return names, fmt.Errorf("copying %s to host %s: %w", o.Name, p.HostName, err)
		}
		done += o.Size
		names = append(names, name)
	}
	return names, nil
}

// undoCreate takes back what a create-vm job did: the VM on its host if it
// is this one, its disks, and the record.
func (m *Manager) undoCreate(ctx context.Context, in createInput, p vmPlan) error {
	var errs []error
	if p.HostID != "" {
		drv, err := m.driver(ctx, p.HostID)
		if err != nil {
			return err
		}
		if v, err := drv.VM(ctx, in.Name); err == nil && v.Labels[LabelVM] == in.VMID {
			if v.State != hostapi.StateStopped {
				if err := drv.PowerOff(ctx, v.ID); err != nil && !errors.Is(err, hostapi.ErrInvalidState) {
					errs = append(errs, err)
				}
			}
			if err := drv.DeleteVM(ctx, v.ID, &hostapi.DeleteOptions{KeepDisks: true}); err != nil && !errors.Is(err, hostapi.ErrNotFound) {
				errs = append(errs, err)
			}
		} else if err != nil && !errors.Is(err, hostapi.ErrNotFound) {
			errs = append(errs, err)
		}
		for i := range p.Disks {
			if err := drv.DeleteDisk(ctx, p.Pool, diskName(in, i)); err != nil && !errors.Is(err, hostapi.ErrNotFound) {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := m.st.DeleteVM(ctx, in.VMID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	m.forgetHost(p.HostID)
	return nil
}

// placeVM resolves the template and rates the hosts of the group.
// Placements in one group are serialized from the rating to the VM's
// demand counted on its host, so that VMs placed at the same time do not
// all go to the host that was best before any of them.
func (m *Manager) placeVM(ctx context.Context, in createInput) (vmPlan, error) {
	lib := m.cfg.Library
	var p vmPlan
	if in.Template != "" {
		t, err := findObject(lib, in.Template, library.KindTemplate)
		if err != nil {
			return p, err
		}
		hp, err := lib.Object(t.Template.HardwareProfileID)
		if err != nil || hp.HardwareProfile == nil {
			return p, fmt.Errorf("template %s: hardware profile %s: not in the library", t.Name, t.Template.HardwareProfile)
		}
		p.VCPUs, p.Memory = hp.HardwareProfile.VCPU, hp.HardwareProfile.MemoryMiB
		for _, n := range hp.HardwareProfile.NICs {
			p.NICs = append(p.NICs, n.Network)
		}
		p.Boot = hp.HardwareProfile.BootOrder
		p.Disks = t.Template.DiskIDs
	} else {
		d, err := findObject(lib, in.Disk, library.KindVHD, library.KindVHDX, library.KindRaw)
		if err != nil {
			return p, err
		}
		p.Disks = []string{d.ID}
	}
	if in.VCPUs > 0 {
		p.VCPUs = in.VCPUs
	}
	if in.MemoryMiB > 0 {
		p.Memory = in.MemoryMiB
	}
	var diskBytes int64
	for _, id := range p.Disks {
		o, err := lib.Object(id)
		if err != nil {
			return p, fmt.Errorf("disk %s: %w", id, err)
		}
		if o.Problem != "" {
			return p, fmt.Errorf("disk %s: %s", o.Name, o.Problem)
		}
		if _, err := lib.Nearest(o, ""); err != nil {
			return p, fmt.Errorf("disk %s: no usable replica: %w", o.Name, err)
		}
		size := o.Size
		if o.Disk != nil && o.Disk.VirtualSize > size && !in.Differencing {
			size = o.Disk.VirtualSize
		}
		diskBytes += size
	}
	g, err := m.st.Group(ctx, in.Group)
	if err != nil {
		return p, err
	}
	unlock := m.lockGroup(g.ID)
	defer unlock()
	hosts, err := m.placementHosts(ctx, g, 0)
	if err != nil {
		return p, err
	}
	if len(hosts) == 0 {
		return p, fmt.Errorf("group %s has no hosts", g.Name)
	}
	goal, err := goalOf(g.Goal)
	if err != nil {
		return p, err
	}
	placer := m.placer
	if goal != placement.LoadBalance {
		cfg := m.cfg.Placement
		cfg.GroupGoals = map[string]placement.Goal{g.ID: goal}
		if placer, err = placement.New(cfg); err != nil {
			return p, err
		}
	}
	pvm := &placement.VM{ID: in.VMID, VCPU: p.VCPUs, Memory: float64(p.Memory), Disk: diskBytes, Group: g.ID}
	ratings, err := placer.Rate(ctx, pvm, hosts)
	if err != nil {
		return p, err
	}
	var pick *placement.Rating
	for i := range ratings {
		rt := &ratings[i]
		hs := HostStars{HostID: rt.Host.ID, Name: rt.Host.Labels["name"], Stars: rt.Stars}
		if rt.Err != nil {
			hs.Reason = rt.Err.Error()
		}
		if len(p.Ratings) < 10 {
			p.Ratings = append(p.Ratings, hs)
		}
		if rt.Err == nil && pick == nil && (in.Host == "" || in.Host == rt.Host.ID) {
			pick = rt
		}
	}
	if pick == nil {
		if in.Host != "" {
			for _, rt := range ratings {
				if rt.Host.ID == in.Host {
					return p, fmt.Errorf("host %s cannot take the VM: %v", rt.Host.Labels["name"], rt.Err)
				}
			}
			return p, fmt.Errorf("host %s is not in group %s", in.Host, g.Name)
		}
		reasons := ""
		for i, rt := range ratings {
			if i == 3 {
				reasons += "; ..."
				break
			}
			if i > 0 {
				reasons += "; "
			}
			reasons += fmt.Sprintf("%s: %v", rt.Host.Labels["name"], rt.Err)
		}
		return p, fmt.Errorf("no host of group %s can take the VM (%s)", g.Name, reasons)
	}
	h, err := m.st.Host(ctx, pick.Host.ID)
	if err != nil {
		return p, err
	}
	p.Demand = placement.Sizer{Sizing: m.cfg.Placement.Sizing, DefaultCPU: m.cfg.Placement.DefaultCPU}.Demand(pvm, pick.Host)
	m.addPending(h.ID, in.Name, p.Demand)
	p.HostID, p.HostName, p.Site, p.Stars = h.ID, h.Name, h.Site, pick.Stars
	// The pool with the most room.
	vols := slices.Clone(pick.Host.Volumes)
	slices.SortStableFunc(vols, func(a, b placement.Volume) int {
		switch {
		case a.Free > b.Free:
			return -1
		case a.Free < b.Free:
			return 1
		}
		return 0
	})
	if len(vols) > 0 {
		p.Pool = vols[0].Name
	}
	return p, nil
}

// findObject returns the one sound object of one of kinds that ref names.
func findObject(lib *library.Library, ref string, kinds ...library.Kind) (*library.Object, error) {
	var found []*library.Object
	for _, o := range lib.Find(ref) {
		if slices.Contains(kinds, o.Kind) {
			found = append(found, o)
		}
	}
	switch {
	case len(found) == 0:
		return nil, fmt.Errorf("the library has no %s named %q: %w", kinds[0], ref, store.ErrNotFound)
	case len(found) > 1:
		return nil, fmt.Errorf("%q names %d objects of the library; use an ID", ref, len(found))
	case found[0].Problem != "":
		return nil, fmt.Errorf("%s %s: %s", found[0].Kind, ref, found[0].Problem)
	}
	return found[0], nil
}

// addPending counts the demand d of VM name, being made on a host, until
// the host runs it or dropPending.
func (m *Manager) addPending(hostID, name string, d placement.Vector) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending[hostID] == nil {
		m.pending[hostID] = map[string]placement.Vector{}
	}
	m.pending[hostID][name] = d
}

func (m *Manager) dropPending(hostID, name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pending[hostID], name)
	if len(m.pending[hostID]) == 0 {
		delete(m.pending, hostID)
	}
}

// lockGroup serializes placements in one host group.
func (m *Manager) lockGroup(id string) (unlock func()) { return m.groupLocks.Lock(id) }
