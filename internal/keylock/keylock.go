// Package keylock holds one mutex per key, made on first use: callers with
// equal keys take turns, others run at once.
package keylock

import "sync"

// Map is a set of mutexes by key. The zero value is ready; a Map must not
// be copied after first use. Mutexes are kept for the Map's life, so keys
// should be few (hosts, groups), not per request.
type Map[K comparable] struct {
	mu    sync.Mutex
	locks map[K]*sync.Mutex
}

// Lock locks key's mutex and returns its unlock.
func (m *Map[K]) Lock(key K) (unlock func()) {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = map[K]*sync.Mutex{}
	}
	l := m.locks[key]
	if l == nil {
		l = new(sync.Mutex)
		m.locks[key] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}
