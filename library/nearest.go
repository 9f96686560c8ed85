package library

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// Nearest returns the replica of obj that is cheapest to move to site: one
// at site itself first (cost 0), then the lowest cost in Options.Costs (or
// Options.Cost), then replicas whose cost is not known. Replicas that are
// offline or were found corrupt are skipped. Ties go to the share listed
// first in Options.Shares. It fails with an error wrapping ErrNotFound
// when no replica is usable.
func (l *Library) Nearest(obj *Object, site string) (Replica, error) {
	rs := l.ranked(obj, site)
	if len(rs) == 0 {
		return Replica{}, fmt.Errorf("library: no usable replica of %s (%s) for site %s: %w", obj.Name, obj.ID, site, ErrNotFound)
	}
	return rs[0], nil
}

// ranked returns the usable replicas of obj, cheapest to move to site
// first.
func (l *Library) ranked(obj *Object, site string) []Replica {
	if obj == nil {
		return nil
	}
	// The library's current view of the object: replicas marked since obj
	// was taken count.
	if cur, err := l.Object(obj.ID); err == nil {
		obj = cur
	}
	l.mu.RLock()
	type ranked struct {
		r    Replica
		cost float64
	}
	var rs []ranked
	for _, r := range obj.Replicas {
		if !r.Usable() || l.offline[r.Share] {
			continue
		}
		c, ok := l.cost(r.Site, site)
		if !ok || math.IsNaN(c) {
			c = math.Inf(1)
		}
		rs = append(rs, ranked{r, c})
	}
	l.mu.RUnlock()
	slices.SortStableFunc(rs, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(a.cost, b.cost), cmp.Compare(l.order[a.r.Share], l.order[b.r.Share]), cmp.Compare(a.r.Path, b.r.Path))
	})
	out := make([]Replica, len(rs))
	for i, r := range rs {
		out[i] = r.r
	}
	return out
}
