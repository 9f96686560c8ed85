package sim

import (
	"context"
	"sync"
	"time"
)

// A Clock is the simulator's time: Now for timestamps (events, stats,
// checkpoints) and Sleep for the duration of an operation. The default is
// the machine's clock; tests pass a *ManualClock, or use the default
// inside a testing/synctest bubble, where time.Timer is already fake.
// A Clock is used from many goroutines at once.
type Clock interface {
	Now() time.Time
	// Sleep returns nil after d has passed, or ctx.Err() when ctx is done
	// first. A d of zero or less returns ctx.Err() at once.
	Sleep(ctx context.Context, d time.Duration) error
}

// RealClock returns the machine's clock.
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// A ManualClock is a Clock that moves only when Advance is called: a test
// starts an operation in a goroutine, waits until it sleeps (Sleepers, or
// synctest.Wait), and advances the clock to let it finish. It is safe for
// concurrent use.
type ManualClock struct {
	mu       sync.Mutex
	now      time.Time
	sleepers []*sleeper
}

type sleeper struct {
	until time.Time
	wake  chan struct{}
}

// NewManualClock returns a ManualClock that reads start.
func NewManualClock(start time.Time) *ManualClock {
	return &ManualClock{now: start}
}

// Now returns the clock's time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep blocks until Advance has moved the clock by d, or ctx is done.
func (c *ManualClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	c.mu.Lock()
	s := &sleeper{until: c.now.Add(d), wake: make(chan struct{})}
	c.sleepers = append(c.sleepers, s)
	c.mu.Unlock()
	select {
	case <-s.wake:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		for i, x := range c.sleepers {
			if x == s {
				c.sleepers = append(c.sleepers[:i], c.sleepers[i+1:]...)
				break
			}
		}
		c.mu.Unlock()
		return ctx.Err()
	}
}

// Advance moves the clock forward by d and wakes the sleepers whose time
// has come.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.sleepers[:0]
	for _, s := range c.sleepers {
		if s.until.After(c.now) {
			keep = append(keep, s)
		} else {
			close(s.wake)
		}
	}
	clear(c.sleepers[len(keep):])
	c.sleepers = keep
}

// Sleepers returns how many Sleep calls are waiting for the clock.
func (c *ManualClock) Sleepers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sleepers)
}
