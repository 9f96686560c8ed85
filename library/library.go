package library

import (
	"cmp"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/vmmkit/vmmkit/internal/keylock"
)

// Options configure a Library. Zero fields mean defaults.
type Options struct {
	// Shares the library indexes; their names must be unique. The order
	// matters only to break ties (Object.Name, Nearest).
	Shares []Share
	// Costs is the cost of moving data between two sites, looked up as
	// {from, to} and then {to, from}. The cost within a site is 0. A pair
	// that is not listed costs more than any listed one. Cost, when set,
	// is used instead.
	Costs map[[2]string]float64
	// Cost returns the cost of moving data from one site to another and
	// whether it is known.
	Cost func(from, to string) (float64, bool)
	// CacheDir, when set, is a directory where Refresh keeps what it learned
	// of each share (sizes, times, manifests, parsed metadata), so that a
	// new process reuses it instead of hashing everything again. It is
	// created if missing.
	CacheDir string
	// Workers bounds the files Refresh reads and hashes at once; 0 means
	// GOMAXPROCS. Files of more than one chunk are hashed at most two at a
	// time, each in Workers chunks at once, so that Refresh holds at most
	// about 3 × Workers × ChunkSize bytes of buffers.
	Workers int
	// Logger receives what Refresh finds wrong with shares and files; nil
	// discards it.
	Logger *slog.Logger
}

// A Library indexes the objects stored on a set of shares. It is safe for
// concurrent use; Refresh calls are serialized.
type Library struct {
	opts    Options
	shares  []Share
	byName  map[string]Share
	order   map[string]int // share name -> position in opts.Shares
	log     *slog.Logger
	refresh sync.Mutex    // held by Refresh
	large   chan struct{} // files of several chunks being hashed

	mu      sync.RWMutex
	memo    map[string]*shareMemo // by share name
	objects map[string]*Object    // by ID
	sorted  []*Object
	offline map[string]bool // shares that failed the last Refresh
	loaded  bool            // CacheDir read

	parents keylock.Map[parentKey] // Deploy's copies of cached parents
}

// New returns a library over opts.Shares. It does not touch the shares:
// call Refresh to index them.
func New(opts Options) (*Library, error) {
	l := &Library{
		opts:    opts,
		byName:  map[string]Share{},
		order:   map[string]int{},
		log:     opts.Logger,
		memo:    map[string]*shareMemo{},
		objects: map[string]*Object{},
		offline: map[string]bool{},
		large:   make(chan struct{}, 2),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.opts.Workers <= 0 {
		l.opts.Workers = runtime.GOMAXPROCS(0)
	}
	for i, s := range opts.Shares {
		if s == nil {
			return nil, errors.New("library: nil share")
		}
		if _, dup := l.byName[s.Name()]; dup {
			return nil, fmt.Errorf("library: two shares named %q", s.Name())
		}
		if strings.ContainsAny(s.Name(), "/\\\x00") || s.Name() == "" {
			return nil, fmt.Errorf("library: share name %q: %w", s.Name(), ErrInvalidName)
		}
		l.byName[s.Name()] = s
		l.order[s.Name()] = i
		l.shares = append(l.shares, s)
	}
	return l, nil
}

// Share returns the share of that name, or nil.
func (l *Library) Share(name string) Share { return l.byName[name] }

// Shares returns the library's shares in the order they were given.
func (l *Library) Shares() []Share { return slices.Clone(l.shares) }

// Objects yields the objects found by the last Refresh, by name and then
// ID.
func (l *Library) Objects() iter.Seq[*Object] {
	l.mu.RLock()
	objs := l.sorted
	l.mu.RUnlock()
	return slices.Values(objs)
}

// Object returns the object with that ID, or an error wrapping
// ErrNotFound.
func (l *Library) Object(id string) (*Object, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if o := l.objects[id]; o != nil {
		return o, nil
	}
	return nil, fmt.Errorf("library: object %s: %w", id, ErrNotFound)
}

// Find returns the objects that ref names, by name and then ID: the object
// whose ID is ref, else those with a replica at path ref (on any share) or
// "SHARE:PATH", else those named ref. It returns nil when none matches.
func (l *Library) Find(ref string) []*Object {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.findLocked(ref)
}

func (l *Library) findLocked(ref string) []*Object {
	if o := l.objects[ref]; o != nil {
		return []*Object{o}
	}
	var byPath, byName []*Object
	share, p, hasShare := strings.Cut(ref, ":")
	for _, o := range l.sorted {
		for _, r := range o.Replicas {
			if r.Path == ref || hasShare && r.Share == share && r.Path == p {
				byPath = append(byPath, o)
				break
			}
		}
		if o.Name == ref {
			byName = append(byName, o)
		}
	}
	if len(byPath) > 0 {
		return byPath
	}
	return byName
}

// Manifest returns the chunk manifest of the object with that ID, which
// Copy and CopyToFile check every chunk against, or an error wrapping
// ErrNotFound.
func (l *Library) Manifest(id string) (*Manifest, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	o := l.objects[id]
	if o != nil {
		for _, r := range o.Replicas {
			if m := l.memo[r.Share]; m != nil {
				if e := m.entries[r.Path]; e != nil && e.Manifest != nil {
					return e.Manifest, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("library: manifest of %s: %w", id, ErrNotFound)
}

// cost returns the cost of moving data from site from to site to.
func (l *Library) cost(from, to string) (float64, bool) {
	if from == to {
		return 0, true
	}
	if l.opts.Cost != nil {
		return l.opts.Cost(from, to)
	}
	if c, ok := l.opts.Costs[[2]string{from, to}]; ok {
		return c, true
	}
	c, ok := l.opts.Costs[[2]string{to, from}]
	return c, ok
}

// compareObjects orders objects by name, then ID.
func compareObjects(a, b *Object) int {
	return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
}
