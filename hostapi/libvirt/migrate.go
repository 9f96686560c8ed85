package libvirt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/vmmkit/vmmkit/hostapi"
)

// Migrate moves VM id to dst, which must be a *Driver (hostapi.ErrUnsupported
// otherwise), by peer-to-peer migration: this host's daemon connects to
// dst's at dst.URI(). A running VM moves live when opts.Live (paused for the
// copy otherwise); a stopped one moves its definition only (offline; its
// disks must be shared). The VM is defined on dst and undefined here once
// it arrives. Without opts.WithStorage the caller says the storage is
// shared and libvirt's own check for that is waived; with it, QEMU copies
// the disks into dst's pools (volumes of the same names are created there)
// over dst's MigrationDataURI and DisksURI, without tunnelling, which libvirt
// cannot do for a storage copy. Progress reports the bytes moved from the
// job info. When ctx is done the job is aborted and the VM keeps running
// here; a failed migration leaves it running here too.
func (d *Driver) Migrate(ctx context.Context, id string, dst hostapi.Driver, opts *hostapi.MigrateOptions) error {
	err := d.migrate(ctx, id, dst, opts)
	return d.opError(ctx, "migrate", id, err, false)
}

func (d *Driver) migrate(ctx context.Context, id string, dst hostapi.Driver, opts *hostapi.MigrateOptions) error {
	peer, ok := dst.(*Driver)
	if !ok {
		return fmt.Errorf("%w: destination is a %T, not a libvirt driver", hostapi.ErrUnsupported, dst)
	}
	if peer == d {
		return fmt.Errorf("%w: destination is the source", hostapi.ErrInvalidSpec)
	}
	var o hostapi.MigrateOptions
	if opts != nil {
		o = *opts
	}
	l, err := d.c.client(ctx, true)
	if err != nil {
		return err
	}
	dom, err := lookup(l, id)
	if err != nil {
		return d.transport(l, err)
	}
	st, reason, err := l.DomainGetState(dom, 0)
	if err != nil {
		return d.transport(l, err)
	}
	state := apiState(st, reason)
	flags := golibvirt.MigratePeer2peer | golibvirt.MigratePersistDest | golibvirt.MigrateUndefineSource
	var params []golibvirt.TypedParam
	switch state {
	case hostapi.StateRunning, hostapi.StatePaused:
		if o.Live {
			flags |= golibvirt.MigrateLive
		}
	case hostapi.StateStopped, hostapi.StateCrashed:
		if o.WithStorage {
			return fmt.Errorf("%w: libvirt copies storage only while the VM runs", hostapi.ErrUnsupported)
		}
		flags |= golibvirt.MigrateOffline
	default:
		return fmt.Errorf("%w: VM is %s", hostapi.ErrInvalidState, state)
	}
	if o.WithStorage {
		flags |= golibvirt.MigrateNonSharedDisk
		suffix := randomSuffix()
		if u := uniqueURI(peer.opts.MigrationDataURI, "mig", suffix); u != "" {
			params = append(params, golibvirt.TypedParam{Field: golibvirt.MigrateParamURI, Value: *golibvirt.NewTypedParamValueString(u)})
		}
		if u := uniqueURI(peer.opts.DisksURI, "nbd", suffix); u != "" {
			params = append(params, golibvirt.TypedParam{Field: golibvirt.MigrateParamDisksURI, Value: *golibvirt.NewTypedParamValueString(u)})
		}
	} else {
		flags |= golibvirt.MigrateUnsafe
		if flags&golibvirt.MigrateOffline == 0 {
			flags |= golibvirt.MigrateTunnelled
		}
	}

	done := make(chan error, 1)
	go func() {
		_, err := l.DomainMigratePerform3Params(dom, golibvirt.OptString{peer.t.migURI}, params, nil, flags)
		done <- err
	}()
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	aborted := false
	var abortWait <-chan time.Time // bounds the wait for Perform after an abort
	var last, total int64
	for {
		select {
		case err := <-done:
			if err != nil {
				if state == hostapi.StateRunning {
					d.keepRunning(l, dom, peer, id)
				}
				if aborted && ctx.Err() != nil {
					return fmt.Errorf("%w: %w", ctx.Err(), err)
				}
				return d.transport(l, classify(err, false))
			}
			if o.Progress != nil {
				// All moved; a job too short to be seen reports 100 %.
				if total <= 0 {
					last, total = 0, 100
				}
				o.Progress(total, total)
			}
			return nil
		case <-ctx.Done():
			if !aborted {
				aborted = true
				// The job may not have started or may have ended; either way
				// the Perform call returns and says which.
				_ = l.DomainAbortJob(dom)
				abortWait = time.After(abortTimeout)
			}
		case <-abortWait:
			// The daemon did not end the migration when told to (its peer
			// may hold it): give up waiting; the VM's state tells the rest.
			if state == hostapi.StateRunning {
				d.keepRunning(l, dom, peer, id)
			}
			return fmt.Errorf("%w: the migration did not end within %v of its abort: %w", ctx.Err(), abortTimeout, hostapi.ErrHostUnreachable)
		case <-t.C:
			if o.Progress == nil || aborted {
				continue
			}
			p, n, ok := jobProgress(l, dom)
			// Progress never goes back, nor past its total.
			if ok && n > 0 && p >= last && p <= n {
				last, total = p, n
				o.Progress(p, n)
			}
		}
	}
}

// keepRunning resumes a guest that a failed migration left paused on this
// host (libvirt pauses it for the switchover, and a cut then can leave it
// so), unless the destination has it: a VM never runs on both. It tries
// for a while, as the daemon may still be ending the migration job.
func (d *Driver) keepRunning(l *golibvirt.Libvirt, dom golibvirt.Domain, peer *Driver, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), keepRunningTimeout)
	defer cancel()
	for {
		st, _, err := l.DomainGetState(dom, 0)
		if err != nil || golibvirt.DomainState(st) != golibvirt.DomainPaused {
			return
		}
		if v, err := peer.VM(ctx, id); err == nil && v.State != hostapi.StateStopped || err != nil && !errors.Is(err, hostapi.ErrNotFound) {
			return
		}
		if l.DomainResume(dom) == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// keepRunningTimeout bounds keepRunning.
const keepRunningTimeout = 30 * time.Second

// abortTimeout is how long Migrate waits, once ctx is done and the job
// aborted, for the daemon to end the migration call.
const abortTimeout = 30 * time.Second

// progressInterval is how often Migrate reads the job's progress.
const progressInterval = 100 * time.Millisecond

// jobProgress reads the bytes processed and the total of the domain's
// current job.
func jobProgress(l *golibvirt.Libvirt, dom golibvirt.Domain) (done, total int64, ok bool) {
	typ, params, err := l.DomainGetJobStats(dom, 0)
	if err != nil || golibvirt.DomainJobType(typ) == golibvirt.DomainJobNone {
		return 0, 0, false
	}
	var dp, dt, mp, mt int64
	for _, p := range params {
		v, _ := number(p.Value.I)
		switch p.Field {
		case "data_processed":
			dp = v
		case "data_total":
			dt = v
		case "memory_processed":
			mp = v
		case "memory_total":
			mt = v
		}
	}
	if dt > 0 {
		return dp, dt, true
	}
	return mp, mt, mt > 0
}

// transport turns a transport failure of l into hostapi.ErrHostUnreachable
// (dropping l so that the next call reconnects).
func (d *Driver) transport(l *golibvirt.Libvirt, err error) error {
	if isTransport(err) {
		d.c.drop(l)
		return fmt.Errorf("%w: %w", hostapi.ErrHostUnreachable, err)
	}
	return err
}

// uniqueURI gives a unix socket URI a name of its own per migration; other
// URIs are kept.
func uniqueURI(u, kind, suffix string) string {
	if p, ok := strings.CutPrefix(u, "unix://"); ok {
		return "unix://" + strings.TrimSuffix(p, "/") + "/" + kind + "-" + suffix + ".sock"
	}
	return u
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
