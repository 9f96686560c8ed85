package vmm

import (
	"context"
	"errors"
	"strings"

	"github.com/vmmkit/vmmkit/discovery"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// AddHostsSpec says which directory hosts to add, and how.
type AddHostsSpec struct {
	// Query selects the computer accounts (an OU, a filter).
	Query discovery.Query `json:"query"`
	// Group is the ID of the host group the hosts go to. With ByOU, each
	// host goes to a group below it named after the OUs between the
	// query's OU and the host (created when missing), as the directory
	// groups them.
	Group string `json:"group"`
	ByOU  bool   `json:"by_ou,omitempty"`
	// URITemplate makes a host's URI from its account: {dnsHostName},
	// {name} (the account's cn) and {sAMAccountName} (without the
	// trailing $) are replaced, e.g. "qemu+tcp://{dnsHostName}/system".
	URITemplate string `json:"uri_template"`
	// Kind and Site are those of AddHost's HostOptions.
	Kind string `json:"kind,omitempty"`
	Site string `json:"site,omitempty"`
	User string `json:"user,omitempty"`
}

// AddHostsResult is the result of an add-hosts job.
type AddHostsResult struct {
	Found    int          `json:"found"`    // accounts the query selected
	Added    int          `json:"added"`    // hosts added now
	Existing int          `json:"existing"` // already in the inventory
	Failed   []HostFailed `json:"failed,omitempty"`
	Groups   int          `json:"groups_created,omitempty"`
}

// HostFailed is a host an add-hosts job could not add, and why.
type HostFailed struct {
	Name   string `json:"name"`
	URI    string `json:"uri,omitempty"`
	Reason string `json:"reason"`
}

// discovered is one account of the discover step.
type discovered struct {
	Name  string   `json:"name"`
	URI   string   `json:"uri"`
	Group []string `json:"group,omitempty"`
}

// AddHostsFromAD queues a job that finds hosts in Active Directory
// (Config.Discovery) and adds each to the inventory through AddHost: hosts
// already there (by name or URI) are left alone, hosts that do not answer
// are listed in the result with the reason, and the job goes on. Running it
// again adds what is new.
func (m *Manager) AddHostsFromAD(ctx context.Context, spec AddHostsSpec) (store.Job, error) {
	bad := func(format string, args ...any) (store.Job, error) {
		return refuse("add hosts from AD", spec.Query.OU, format, args...)
	}
	switch {
	case m.cfg.Discovery == nil:
		return bad("the manager has no directory client (Config.Discovery)")
	case spec.Query.OU == "":
		return bad("Query.OU is required")
	case !strings.Contains(spec.URITemplate, "{"):
		return bad("URITemplate %q names no attribute ({dnsHostName}, {name} or {sAMAccountName})", spec.URITemplate)
	}
	if _, err := m.st.Group(ctx, spec.Group); err != nil {
		return store.Job{}, err
	}
	return m.Submit(ctx, KindAddHosts, spec.User, spec, "discover", "add")
}

func hostURI(tmpl string, h *discovery.Host) (string, error) {
	if strings.Contains(tmpl, "{dnsHostName}") && h.DNSHostName == "" {
		return "", errors.New("the account has no dNSHostName")
	}
	return strings.NewReplacer("{dnsHostName}", h.DNSHostName, "{name}", h.Name,
		"{sAMAccountName}", strings.TrimSuffix(h.SAMAccountName, "$")).Replace(tmpl), nil
}

func (m *Manager) runAddHosts(ctx context.Context, r *Run) error {
	var in AddHostsSpec
	if err := r.Input(&in); err != nil {
		return err
	}
	type discoverResult struct {
		Hosts  []discovered `json:"hosts"`
		Failed []HostFailed `json:"failed,omitempty"`
	}
	disc, err := Do(ctx, r, "discover", func(ctx context.Context, _ bool) (discoverResult, error) {
		var out discoverResult
		for h, err := range m.cfg.Discovery.Hosts(ctx, in.Query) {
			if err != nil {
				if fatalDiscovery(ctx, err) {
					return out, err
				}
				// An entry that could not be decoded: the search goes on.
				out.Failed = append(out.Failed, HostFailed{Name: h.Name, Reason: err.Error()})
				continue
			}
			uri, err := hostURI(in.URITemplate, &h)
			if err != nil {
				out.Failed = append(out.Failed, HostFailed{Name: h.Name, Reason: err.Error()})
				continue
			}
			out.Hosts = append(out.Hosts, discovered{Name: h.Name, URI: uri, Group: h.Group})
		}
		return out, nil
	})
	if err != nil {
		return err
	}
	found := disc.Hosts
	res := AddHostsResult{Found: len(found) + len(disc.Failed), Failed: disc.Failed}

	added, err := Do(ctx, r, "add", func(ctx context.Context, _ bool) (AddHostsResult, error) {
		out := res
		hosts, err := m.st.Hosts(ctx, "")
		if err != nil {
			return out, err
		}
		have := map[string]bool{}
		for _, h := range hosts {
			have[strings.ToLower(h.Name)], have[h.URI] = true, true
		}
		groups := newGroupTree(m, in.Group)
		for i, d := range found {
			r.Progress(float64(i) / float64(len(found)))
			if have[strings.ToLower(d.Name)] || have[d.URI] {
				out.Existing++
				continue
			}
			gid := in.Group
			if in.ByOU && len(d.Group) > 0 {
				if gid, err = groups.ensure(ctx, d.Group); err != nil {
					return out, err
				}
			}
			_, err := m.AddHost(ctx, gid, d.URI, &HostOptions{Kind: in.Kind, Name: d.Name, Site: in.Site})
			switch {
			case err == nil:
				out.Added++
				have[strings.ToLower(d.Name)], have[d.URI] = true, true
			case errors.Is(err, store.ErrExists):
				out.Existing++
			case ctx.Err() != nil:
				return out, err
			default:
				out.Failed = append(out.Failed, HostFailed{Name: d.Name, URI: d.URI, Reason: err.Error()})
			}
		}
		out.Groups = groups.created
		return out, nil
	})
	if err != nil {
		return err
	}
	return r.SetResult(added)
}

// groupTree finds or creates the host groups below a root by name path.
type groupTree struct {
	m       *Manager
	root    string
	known   map[string]string // parent ID + "/" + name -> ID
	loaded  bool
	created int
}

func newGroupTree(m *Manager, root string) *groupTree {
	return &groupTree{m: m, root: root, known: map[string]string{}}
}

func (t *groupTree) ensure(ctx context.Context, path []string) (string, error) {
	if !t.loaded {
		gs, err := t.m.st.Groups(ctx)
		if err != nil {
			return "", err
		}
		for _, g := range gs {
			t.known[g.ParentID+"/"+g.Name] = g.ID
		}
		t.loaded = true
	}
	parent := t.root
	for _, name := range path {
		id, ok := t.known[parent+"/"+name]
		if !ok {
			pg, err := t.m.st.Group(ctx, parent)
			if err != nil {
				return "", err
			}
			g, err := t.m.st.CreateGroup(ctx, store.HostGroup{ParentID: parent, Name: name, Goal: pg.Goal, Reserves: pg.Reserves})
			if err != nil {
				return "", err
			}
			id = g.ID
			t.known[parent+"/"+name] = id
			t.created++
		}
		parent = id
	}
	return parent, nil
}

// fatalDiscovery reports whether err ends a directory search (rather than
// being one entry the client could not decode).
func fatalDiscovery(ctx context.Context, err error) bool {
	for _, e := range []error{discovery.ErrQuery, discovery.ErrNoSuchOU, discovery.ErrReferral, discovery.ErrConnection,
		discovery.ErrClosed, discovery.ErrInvalidCredentials, discovery.ErrAccountRestricted, discovery.ErrTLS} {
		if errors.Is(err, e) {
			return true
		}
	}
	return ctx.Err() != nil
}
