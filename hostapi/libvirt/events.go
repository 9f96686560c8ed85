package libvirt

import (
	"context"
	"fmt"
	"iter"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/vmmkit/vmmkit/hostapi"
)

// Events subscribes to the host's domain lifecycle events when called (so
// no change made after the call is missed, even before the loop starts) and
// yields them until ctx is done or the loop stops; a lost connection ends
// the sequence with hostapi.ErrHostUnreachable, Close with hostapi.ErrClosed. Each call is its own
// subscription; it is dropped when ctx is done or the loop ends.
func (d *Driver) Events(ctx context.Context) iter.Seq2[hostapi.Event, error] {
	sub, err := d.subscribe(ctx)
	return func(yield func(hostapi.Event, error) bool) {
		if err != nil {
			if ctx.Err() == nil {
				yield(hostapi.Event{}, err)
			}
			return
		}
		defer sub.cancel()
		for {
			ev, ok, err := sub.next(ctx)
			if !ok {
				if err != nil && ctx.Err() == nil {
					yield(hostapi.Event{}, err)
				}
				return
			}
			if !yield(ev, nil) {
				return
			}
		}
	}
}

// subscription queues events from go-libvirt's channel, which must be read
// promptly, until the iterator takes them.
type subscription struct {
	cancel context.CancelFunc
	mu     sync.Mutex
	queue  []hostapi.Event
	closed bool
	wake   chan struct{} // signalled when queue or closed changes
	err    error
}

func (d *Driver) subscribe(ctx context.Context) (*subscription, error) {
	hostID, err := d.hostUUID(ctx)
	if err != nil {
		return nil, d.opError(ctx, "events", "", err, false)
	}
	sctx, cancel := context.WithCancel(ctx)
	var ch <-chan golibvirt.DomainEventLifecycleMsg
	err = d.c.read(sctx, func(l *golibvirt.Libvirt) error {
		var err error
		ch, err = l.LifecycleEvents(sctx)
		return err
	})
	if err != nil {
		cancel()
		return nil, d.opError(ctx, "events", "", err, false)
	}
	s := &subscription{cancel: cancel, wake: make(chan struct{}, 1)}
	go func() {
		// go-libvirt closes ch when sctx is done or the connection is lost.
		for m := range ch {
			ev, ok := apiEvent(m)
			if !ok {
				continue
			}
			ev.Host = hostID
			s.mu.Lock()
			s.queue = append(s.queue, ev)
			s.mu.Unlock()
			s.signal()
		}
		s.mu.Lock()
		s.closed = true
		switch {
		case d.c.isClosed():
			s.err = hostapi.NewOpError("events", d.t.name, "", hostapi.ErrClosed)
		case sctx.Err() == nil:
			s.err = hostapi.NewOpError("events", d.t.name, "", fmt.Errorf("%w: event stream closed", hostapi.ErrHostUnreachable))
		}
		s.mu.Unlock()
		s.signal()
	}()
	return s, nil
}

func (s *subscription) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// next returns the next event, or ok false once the stream ended (err
// says why when it was not ctx).
func (s *subscription) next(ctx context.Context) (hostapi.Event, bool, error) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			ev := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return ev, true, nil
		}
		if s.closed {
			err := s.err
			s.mu.Unlock()
			return hostapi.Event{}, false, err
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return hostapi.Event{}, false, nil
		case <-s.wake:
		}
	}
}

// hostUUID returns the host's UUID, reading it once.
func (d *Driver) hostUUID(ctx context.Context) (string, error) {
	d.mu.Lock()
	id := d.hostID
	d.mu.Unlock()
	if id != "" {
		return id, nil
	}
	h, err := d.Host(ctx)
	if err != nil {
		return "", err
	}
	return h.ID, nil
}

// apiEvent maps a libvirt lifecycle event; ok is false for events that
// are not state changes of their own (steps of a migration or shutdown).
func apiEvent(m golibvirt.DomainEventLifecycleMsg) (hostapi.Event, bool) {
	ev := hostapi.Event{Time: time.Now(), VM: formatUUID(m.Dom.UUID), VMName: m.Dom.Name}
	switch golibvirt.DomainEventType(m.Event) {
	case golibvirt.DomainEventDefined:
		ev.Kind, ev.State = hostapi.EventDefined, hostapi.StateStopped
	case golibvirt.DomainEventUndefined:
		ev.Kind, ev.State = hostapi.EventDeleted, hostapi.StateUnknown
	case golibvirt.DomainEventStarted:
		ev.Kind, ev.State = hostapi.EventStarted, hostapi.StateRunning
		if golibvirt.DomainEventStartedDetailType(m.Detail) == golibvirt.DomainEventStartedMigrated {
			ev.Kind = hostapi.EventMigratedIn
		}
	case golibvirt.DomainEventSuspended:
		if golibvirt.DomainEventSuspendedDetailType(m.Detail) == golibvirt.DomainEventSuspendedMigrated {
			return ev, false
		}
		ev.Kind, ev.State = hostapi.EventPaused, hostapi.StatePaused
	case golibvirt.DomainEventResumed:
		if golibvirt.DomainEventResumedDetailType(m.Detail) == golibvirt.DomainEventResumedMigrated {
			return ev, false
		}
		ev.Kind, ev.State = hostapi.EventResumed, hostapi.StateRunning
	case golibvirt.DomainEventStopped:
		switch golibvirt.DomainEventStoppedDetailType(m.Detail) {
		case golibvirt.DomainEventStoppedMigrated:
			ev.Kind, ev.State = hostapi.EventMigratedOut, hostapi.StateUnknown
		case golibvirt.DomainEventStoppedCrashed:
			ev.Kind, ev.State = hostapi.EventCrashed, hostapi.StateCrashed
		default:
			ev.Kind, ev.State = hostapi.EventStopped, hostapi.StateStopped
		}
	case golibvirt.DomainEventPmsuspended:
		ev.Kind, ev.State = hostapi.EventPaused, hostapi.StatePaused
	case golibvirt.DomainEventCrashed:
		ev.Kind, ev.State = hostapi.EventCrashed, hostapi.StateCrashed
	default:
		return ev, false
	}
	return ev, true
}
