package keylock

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestTurns(t *testing.T) {
	var m Map[string]
	var inside [2]atomic.Int32
	var wg sync.WaitGroup
	for i := range 50 {
		k := i % 2
		wg.Go(func() {
			unlock := m.Lock([]string{"a", "b"}[k])
			if n := inside[k].Add(1); n != 1 {
				t.Errorf("%d holders of key %d", n, k)
			}
			time.Sleep(time.Millisecond) // long enough for a second holder to show
			inside[k].Add(-1)
			unlock()
		})
	}
	wg.Wait()
}
