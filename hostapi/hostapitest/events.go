package hostapitest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vmmkit/vmmkit/hostapi"
)

// eventTimeout bounds the wait for an event after the operation that
// causes it returned, and for a sequence to end after its ctx is done.
const eventTimeout = 30 * time.Second

// recorder reads a driver's Events in a goroutine that t's cleanup stops.
type recorder struct {
	host   string
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	events []hostapi.Event
	err    error
}

// record subscribes to d's events; nil when d does not support Events.
func record(t *testing.T, d hostapi.Driver) *recorder {
	t.Helper()
	if !d.Supports(hostapi.Events) {
		return nil
	}
	h, err := d.Host(testCtx(t))
	must(t, "Host", err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &recorder{host: h.ID, cancel: cancel, done: make(chan struct{})}
	seq := d.Events(ctx) // subscribed from here on
	go func() {
		defer close(r.done)
		for ev, err := range seq {
			r.mu.Lock()
			if err != nil {
				r.err = err
				r.mu.Unlock()
				return
			}
			r.events = append(r.events, ev)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the subscription and checks that the sequence ends.
func (r *recorder) stop(t *testing.T) {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(eventTimeout):
		t.Errorf("Events: the sequence did not end %v after its ctx was cancelled", eventTimeout)
	}
}

// stateAfter is the state an event of kind leaves its VM in, when the
// kind says.
var stateAfter = map[hostapi.EventKind]hostapi.State{
	hostapi.EventDefined:     hostapi.StateStopped,
	hostapi.EventStarted:     hostapi.StateRunning,
	hostapi.EventStopped:     hostapi.StateStopped,
	hostapi.EventPaused:      hostapi.StatePaused,
	hostapi.EventResumed:     hostapi.StateRunning,
	hostapi.EventDeleted:     hostapi.StateUnknown,
	hostapi.EventMigratedOut: hostapi.StateUnknown,
}

// expect waits until the events of VM id include want in order, and
// checks each of them.
func (r *recorder) expect(t *testing.T, id string, want ...hostapi.EventKind) {
	t.Helper()
	if r == nil {
		return
	}
	deadline := time.Now().Add(eventTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		r.mu.Lock()
		var got []hostapi.Event
		for _, ev := range r.events {
			if ev.VM == id {
				got = append(got, ev)
			}
		}
		err := r.err
		r.mu.Unlock()
		if err != nil {
			t.Fatalf("Events: %v", err)
		}
		if subsequence(got, want) {
			for _, ev := range got {
				if ev.Host != r.host || ev.Time.IsZero() || ev.VMName == "" {
					t.Errorf("event %v of VM %s: got Host %q, Time %v, VMName %q; want Host %q, a time and the VM's name", ev.Kind, id, ev.Host, ev.Time, ev.VMName, r.host)
				}
				if s, ok := stateAfter[ev.Kind]; ok && ev.State != s {
					t.Errorf("event %v of VM %s: got State %v, want %v", ev.Kind, id, ev.State, s)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("Events of VM %s: got %v, want %v in this order", id, kinds(got), want)
			return
		}
		<-tick.C
	}
}

func kinds(evs []hostapi.Event) []hostapi.EventKind {
	out := make([]hostapi.EventKind, len(evs))
	for i, ev := range evs {
		out[i] = ev.Kind
	}
	return out
}

// subsequence says whether want's kinds occur in got in order.
func subsequence(got []hostapi.Event, want []hostapi.EventKind) bool {
	i := 0
	for _, ev := range got {
		if i < len(want) && ev.Kind == want[i] {
			i++
		}
	}
	return i == len(want)
}
