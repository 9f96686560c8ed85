package sim

import (
	"context"
	"iter"
	"sync"

	"github.com/vmmkit/vmmkit/hostapi"
)

// sub is one Events subscription.
type sub struct {
	conn *Host
	wake chan struct{} // a token when there is news

	mu    sync.Mutex
	queue []hostapi.Event
	ended bool
	err   error
}

func (s *sub) push(ev hostapi.Event) {
	s.mu.Lock()
	if !s.ended {
		s.queue = append(s.queue, ev)
	}
	s.mu.Unlock()
	s.signal()
}

func (s *sub) end(err error) {
	s.mu.Lock()
	if !s.ended {
		s.ended, s.err = true, err
	}
	s.mu.Unlock()
	s.signal()
}

func (s *sub) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// emit sends an event about v to the host's subscribers; h.mu is held.
func (h *host) emit(v *vm, kind hostapi.EventKind) {
	if len(h.subs) == 0 {
		return
	}
	ev := hostapi.Event{
		Time:   h.now(),
		Host:   h.name,
		VM:     v.info.ID,
		VMName: v.info.Name,
		Kind:   kind,
		State:  v.info.State,
	}
	for s := range h.subs {
		s.push(ev)
	}
}

// Events yields the host's VM events from the call on, each as it
// happens, until ctx is done (the sequence then ends without an error),
// the connection is closed (hostapi.ErrClosed) or the host goes down
// (hostapi.ErrHostUnreachable). Events queue without bound until the
// sequence is read; read it once, from one goroutine. A subscription that
// is never read ends when ctx is done.
func (c *Host) Events(ctx context.Context) iter.Seq2[hostapi.Event, error] {
	h := c.h
	err := c.enter(ctx)
	if err == nil && !h.supports(hostapi.Events) {
		err = h.unsupported(hostapi.Events)
	}
	if err != nil {
		return func(yield func(hostapi.Event, error) bool) {
			if ctx.Err() == nil {
				yield(hostapi.Event{}, c.err("events", "", err))
			}
		}
	}
	s := &sub{conn: c, wake: make(chan struct{}, 1)}
	h.mu.Lock()
	if h.subs == nil {
		h.subs = make(map[*sub]struct{})
	}
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	unsubscribe := func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
	}
	stop := context.AfterFunc(ctx, unsubscribe)
	return func(yield func(hostapi.Event, error) bool) {
		defer stop()
		defer unsubscribe()
		for {
			s.mu.Lock()
			queue, ended, err := s.queue, s.ended, s.err
			s.queue = nil
			s.mu.Unlock()
			for _, ev := range queue {
				if ctx.Err() != nil || !yield(ev, nil) {
					return
				}
			}
			if len(queue) > 0 {
				continue
			}
			if ended {
				if err != nil && ctx.Err() == nil {
					yield(hostapi.Event{}, c.err("events", "", err))
				}
				return
			}
			select {
			case <-s.wake:
			case <-ctx.Done():
				return
			}
		}
	}
}
