package vmm

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strings"

	"github.com/vmmkit/vmmkit/placement"
	"github.com/vmmkit/vmmkit/placement/consolidate"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// ConsolidateSpec says which physical machines to consider and where they
// would go.
type ConsolidateSpec struct {
	// Machines are the physical servers with their measured use (see
	// package placement/history for the readers of perfmon, PlanetLab,
	// Bitbrains and CSV traces).
	Machines []consolidate.Machine
	// Group is the ID of the host group the candidates would run in.
	Group string
	// Rank and Plan tune consolidate.Rank and consolidate.Plan; nil means
	// their defaults.
	Rank *consolidate.RankOptions
	Plan *consolidate.PlanOptions
	// Sources maps a machine's ID to its disk (a block device or raw image
	// this manager's machine reads). With Convert, each planned machine
	// that has one gets a ConvertPhysical job, into Share, deployed on
	// the host the plan chose.
	Sources map[string]string
	Convert bool
	Share   string
	User    string
}

// ConsolidateResult is what Consolidate found, planned and queued.
type ConsolidateResult struct {
	// Candidates are all machines, best candidate first, with the reasons.
	Candidates []consolidate.Candidate
	// Plan places the candidates (Consolidate true) on the group's hosts
	// and replays their history there; nil when there is no candidate.
	Plan *consolidate.Result
	// Jobs maps a machine's ID to its ConvertPhysical job.
	Jobs map[string]string
}

// Consolidate ranks physical machines as consolidation candidates from
// their history (consolidate.Rank), plans which hosts of a group the
// candidates fit on over that history (consolidate.Plan, against the
// hosts' use now), and with spec.Convert queues a ConvertPhysical job for
// each planned machine with a source, deployed to its planned host. The
// ranking and the plan are computed at once; the conversions are jobs.
func (m *Manager) Consolidate(ctx context.Context, spec ConsolidateSpec) (*ConsolidateResult, error) {
	fail := func(err error) (*ConsolidateResult, error) {
		return nil, &store.OpError{Op: "consolidate", ID: spec.Group, Err: err}
	}
	if len(spec.Machines) == 0 {
		return fail(fmt.Errorf("%w: no machines", store.ErrInvalid))
	}
	g, err := m.st.Group(ctx, spec.Group)
	if err != nil {
		return nil, err
	}
	ranked, err := consolidate.Rank(ctx, spec.Machines, spec.Rank)
	if err != nil {
		return fail(err)
	}
	res := &ConsolidateResult{Candidates: ranked, Jobs: map[string]string{}}
	var cands []consolidate.Machine
	for _, c := range ranked {
		if c.Consolidate {
			cands = append(cands, *c.Machine)
		}
	}
	if len(cands) == 0 {
		return res, nil
	}
	hosts, err := m.placementHosts(ctx, g, 0)
	if err != nil {
		return nil, err
	}
	var ready []*placement.Host
	for _, h := range hosts {
		if h.State == placement.Ready {
			ready = append(ready, h)
		}
	}
	if len(ready) == 0 {
		return fail(fmt.Errorf("group %s has no host ready to take VMs", g.Name))
	}
	if res.Plan, err = consolidate.Plan(ctx, cands, ready, spec.Plan); err != nil {
		return fail(err)
	}
	if !spec.Convert {
		return res, nil
	}
	byID := map[string]*placement.Host{}
	for _, h := range ready {
		byID[h.ID] = h
	}
	for _, mc := range cands {
		src, hostID := spec.Sources[mc.ID], res.Plan.Assignments[mc.ID]
		if src == "" || hostID == "" {
			continue
		}
		h := byID[hostID]
		coreMHz := h.Capacity[placement.CPU] / float64(max(h.Cores, 1))
		capMHz := mc.CPU
		if capMHz <= 0 {
			capMHz = mc.Series.CPUCapacity
		}
		mem := int64(math.Ceil(mc.Memory))
		if mem <= 0 {
			mem = 2048
		}
		name := vmNameFor(mc.ID)
		j, err := m.ConvertPhysical(ctx, ConvertSpec{Source: src, Name: name, Share: spec.Share, User: spec.User,
			Deploy: &VMSpec{Name: name, Group: g.ID, Host: hostID, VCPUs: max(1, int(math.Ceil(capMHz/coreMHz))),
				MemoryMiB: mem, Owner: spec.User}})
		if err != nil {
			return res, fmt.Errorf("vmm: consolidate: converting %s: %w", mc.ID, err)
		}
		res.Jobs[mc.ID] = j.ID
	}
	return res, nil
}

var notName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// vmNameFor makes a VM name from a machine's ID.
func vmNameFor(id string) string {
	n := strings.Trim(notName.ReplaceAllString(id, "-"), "-._")
	if n == "" {
		n = "p2v"
	}
	if len(n) > 63 {
		n = strings.TrimRight(n[:63], "-._")
	}
	return n
}
