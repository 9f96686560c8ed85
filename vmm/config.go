package vmm

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/vmmkit/vmmkit/discovery"
	"github.com/vmmkit/vmmkit/hostapi"
	"github.com/vmmkit/vmmkit/hostapi/libvirt"
	"github.com/vmmkit/vmmkit/hostapi/sim"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/placement"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// A Connector opens a Driver to the host a URI names. The Manager calls it
// when a host is added and again after the host's connection failed.
type Connector func(ctx context.Context, uri string) (hostapi.Driver, error)

// SimConnector connects to the hosts of a simulated fleet by URIs of the
// form sim:///NAME (see SimURI).
func SimConnector(f *sim.Fleet) Connector {
	return func(ctx context.Context, uri string) (hostapi.Driver, error) {
		u, err := url.Parse(uri)
		if err != nil || u.Scheme != "sim" {
			return nil, fmt.Errorf("vmm: %q is not a sim:///NAME URI", uri)
		}
		name := strings.TrimPrefix(u.Path, "/")
		h := f.Host(name)
		if h == nil {
			return nil, hostapi.NewOpError("connect", name, "", fmt.Errorf("%w: the fleet has no host %q", hostapi.ErrHostUnreachable, name))
		}
		return h, nil
	}
}

// SimURI is the URI of the simulated host name for SimConnector.
func SimURI(name string) string { return "sim:///" + url.PathEscape(name) }

// LibvirtConnector connects to libvirt hosts (qemu:///system,
// qemu+tcp://host/system, qemu+tls://..., qemu+ssh://...) with opts.
func LibvirtConnector(opts *libvirt.Options) Connector {
	return func(ctx context.Context, uri string) (hostapi.Driver, error) {
		return libvirt.Dial(ctx, uri, opts)
	}
}

// Config configures a Manager. Zero fields mean the defaults given with
// each field.
type Config struct {
	// Store keeps the inventory and the jobs. Nil means the Manager opens
	// its own: PostgreSQL when PostgresDSN is set, else an SQLite file at
	// StorePath. A Store given here is the caller's to close.
	Store store.Store
	// StorePath is the SQLite file of the default store; "" means
	// "vmmkit.db" in the working directory.
	StorePath string
	// PostgresDSN, when set and Store is nil, is the PostgreSQL database
	// of the store: the one to use when several managers share a fleet.
	PostgresDSN string

	// Connectors open host drivers by kind (the Kind of a store.Host).
	// Sim, when set, adds the kind "sim"; "libvirt" is always known
	// (LibvirtConnector with default options) unless given here.
	Connectors map[string]Connector
	// Sim is a simulated fleet whose hosts are added by SimURI.
	Sim *sim.Fleet

	// Library is the image library templates and disks come from; nil
	// means none (CreateVM from a template and ConvertPhysical then fail).
	Library *library.Library
	// Discovery finds hosts in Active Directory for AddHostsFromAD; nil
	// means none.
	Discovery *discovery.Client
	// Placement configures how hosts are rated; the goal of each host
	// group comes from the group itself (see Manager.CreateGroup).
	Placement placement.Config

	// WorkDir holds files of running jobs (P2V captures before they go to
	// the library); it must survive a restart for those jobs to resume.
	// "" means a folder "vmmkit-work" beside StorePath.
	WorkDir string

	// Instance names this manager among those sharing a store; "" means
	// the host name, the process ID and a random suffix.
	Instance string
	// Workers is how many jobs this manager runs at once; 0 means 16.
	Workers int
	// Lease is how long a job stays this manager's without renewal: after
	// a crash, another manager (or this one, restarted) resumes the job
	// that long after the last renewal. 0 means 30 s.
	Lease time.Duration
	// Poll is how often idle workers look for jobs that other managers
	// queued, and how often a running job looks for a cancel request made
	// elsewhere; 0 means 1 s.
	Poll time.Duration
	// CallTimeout bounds each call to a host driver that is not a copy or
	// a migration; 0 means 2 minutes.
	CallTimeout time.Duration
	// RefreshEvery, when set, makes the leader refresh the library that
	// often; OptimizeEvery makes it queue an Optimize job for every group
	// of two hosts or more that often (skipping a group whose last one is
	// still queued or running). Zero means never.
	RefreshEvery, OptimizeEvery time.Duration

	// Jobs adds the product's own job kinds: Submit queues them and the
	// workers run them like the manager's own.
	Jobs map[string]JobFunc
	// NoJobs makes the manager run no jobs itself: it only queues them
	// (for a front end beside managers that run them).
	NoJobs bool

	// Logger receives what the manager does and finds wrong; nil discards.
	Logger *slog.Logger
	// Now is the clock of the manager; nil means time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.StorePath == "" {
		c.StorePath = "vmmkit.db"
	}
	if c.Workers <= 0 {
		c.Workers = 16
	}
	if c.Lease <= 0 {
		c.Lease = 30 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 2 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}
