package library

import (
	"context"
	"errors"
	"fmt"
	"maps"
)

// Replicate copies obj to the share named toShare, under the path of its
// nearest usable replica, and adds the new replica to the library. The
// source is the usable replica nearest to the target share's site (see
// Nearest). A source whose content no longer matches the object's manifest
// (ErrCorrupt) is marked with a Problem, skipped from then on, and the
// next nearest is tried; so is a source whose share went offline. The copy
// is Copy's: verified chunk by chunk, resumable, and visible only when
// whole. Replicate does nothing when the share already holds a usable
// replica. It fails with ErrNotFound when no replica can serve.
func (l *Library) Replicate(ctx context.Context, obj *Object, toShare string, opts *CopyOptions) error {
	dst := l.byName[toShare]
	if dst == nil {
		return fmt.Errorf("library: replicate %s: share %q: %w", obj.Name, toShare, ErrNotFound)
	}
	m, err := l.Manifest(obj.ID)
	if err != nil {
		return err
	}
	ranked := l.ranked(obj, dst.Site())
	if len(ranked) == 0 {
		return fmt.Errorf("library: replicate %s to %s: no usable replica: %w", obj.Name, toShare, ErrNotFound)
	}
	for _, r := range ranked {
		if r.Share == toShare {
			return nil
		}
	}
	// One destination name whatever the source, so that a copy that falls
	// back to another replica resumes the upload the first one began (its
	// parts were checked against the manifest) rather than leaving it.
	name := ranked[0].Path
	return l.fromNearest(ctx, ranked, fmt.Sprintf("replicate %s to %s:%s", obj.Name, toShare, name), func(r Replica) error {
		if err := Copy(ctx, l.byName[r.Share], r.Path, m, dst, name, opts); err != nil {
			return err
		}
		l.addReplica(ctx, dst, name, obj.ID)
		return nil
	})
}

// CopyToHost copies obj into the local file path for a host at site, from
// the nearest usable replica, falling back to the next one as Replicate
// does. The copy is CopyToFile's: verified, resumable, and renamed into
// place only when whole.
func (l *Library) CopyToHost(ctx context.Context, obj *Object, site, path string, opts *CopyOptions) error {
	m, err := l.Manifest(obj.ID)
	if err != nil {
		return err
	}
	return l.fromNearest(ctx, l.ranked(obj, site), fmt.Sprintf("copy %s to %s", obj.Name, path), func(r Replica) error {
		return CopyToFile(ctx, l.byName[r.Share], r.Path, m, path, opts)
	})
}

// fromNearest calls try with each replica of ranked in turn until one
// succeeds. A replica that fails because of itself (its content no longer
// matches, or its share went offline) is marked and the next is tried;
// any other failure, or ctx's, ends it. what names the operation in errors.
func (l *Library) fromNearest(ctx context.Context, ranked []Replica, what string, try func(Replica) error) error {
	var errs []error
	for _, r := range ranked {
		err := try(r)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !l.sourceFailed(r, err) {
			return fmt.Errorf("library: %s from %s:%s: %w", what, r.Share, r.Path, err)
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("library: %s: no replica could serve: %w", what, errors.Join(append(errs, ErrNotFound)...))
}

// sourceFailed reports whether a copy failed because of its source
// replica, which it then marks, so that the next replica is worth trying.
func (l *Library) sourceFailed(r Replica, err error) bool {
	var se *ShareError
	switch {
	case errors.Is(err, ErrCorrupt):
		l.markReplica(r, err.Error())
		return true
	case errors.As(err, &se) && se.Share == r.Share && errors.Is(err, ErrOffline):
		l.mu.Lock()
		l.offline[r.Share] = true
		l.buildLocked()
		l.mu.Unlock()
		return true
	}
	return false
}

// markReplica records that replica r no longer matches its object.
func (l *Library) markReplica(r Replica, problem string) {
	l.log.Warn("library: replica is corrupt", "share", r.Share, "path", r.Path, "problem", problem)
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.memo[r.Share]
	if m == nil || m.entries[r.Path] == nil {
		return
	}
	e := *m.entries[r.Path]
	e.ReplicaProblem = problem
	entries := maps.Clone(m.entries)
	entries[r.Path] = &e
	l.memo[r.Share] = &shareMemo{entries: entries}
	l.buildLocked()
}

// addReplica records a file Replicate wrote, with the manifest and detail
// of the object it copied.
func (l *Library) addReplica(ctx context.Context, s Share, name, id string) {
	fi, err := s.Stat(ctx, name)
	if err != nil {
		return // the next Refresh finds it
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.objects[id]
	if o == nil {
		return
	}
	var src *entry
	for _, r := range o.Replicas {
		if e := l.memo[r.Share].entries[r.Path]; e != nil && e.Manifest != nil {
			src = e
			break
		}
	}
	if src == nil {
		return
	}
	e := &entry{Info: fi, Manifest: src.Manifest, Detail: src.Detail}
	entries := map[string]*entry{}
	if m := l.memo[s.Name()]; m != nil {
		entries = maps.Clone(m.entries)
	}
	entries[name] = e
	l.memo[s.Name()] = &shareMemo{entries: entries}
	l.buildLocked()
}
