package library

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmmkit/vmmkit/vhd"
)

// RefreshStats says what a Refresh did.
type RefreshStats struct {
	Shares      int   // shares scanned
	Files       int   // files listed (sidecars included)
	Reused      int   // files whose earlier result was reused: size, time and version unchanged
	Hashed      int   // files read and hashed
	HashedBytes int64 // bytes hashed
	Objects     int   // objects in the library afterwards
	Problems    int   // objects with a Problem
	// Offline lists the shares that failed with ErrOffline. Their replicas
	// are kept from what the library knew before, marked Offline.
	Offline []string
	// Failed holds every share that could not be scanned, or only in part
	// (a folder it could not read), and why; the offline ones too. What
	// was known of the parts not scanned is kept; only an offline share's
	// replicas are marked Offline.
	Failed   map[string]error
	Duration time.Duration
}

// shareMemo is what the library knows of one share's files. Its map is
// never changed once published; changes make a new one.
type shareMemo struct {
	entries map[string]*entry // by path
}

// entry is what the library learned of one file. It is immutable once
// stored: changes make a new one.
type entry struct {
	Info     FileInfo  `json:"info"`
	Manifest *Manifest `json:"manifest,omitempty"`
	Detail   detail    `json:"detail"`
	// ReplicaProblem is set when a transfer found this copy corrupt.
	ReplicaProblem string `json:"replicaProblem,omitempty"`
}

// detail is what a file's content says, besides its hash.
type detail struct {
	Kind     Kind             `json:"kind"`
	Name     string           `json:"name,omitempty"` // a definition's own name
	Problem  string           `json:"problem,omitempty"`
	Unread   bool             `json:"unread,omitempty"`  // the file could not be read
	Sidecar  bool             `json:"sidecar,omitempty"` // a NAME.meta.json file
	Meta     *Metadata        `json:"meta,omitempty"`
	Disk     *DiskInfo        `json:"disk,omitempty"`
	Parents  []string         `json:"parents,omitempty"` // candidate parent paths in the share
	ISO      *ISOInfo         `json:"iso,omitempty"`
	Hardware *HardwareProfile `json:"hardware,omitempty"`
	GuestOS  *GuestOSProfile  `json:"guestOS,omitempty"`
	Template *Template        `json:"template,omitempty"`
	Script   *ScriptInfo      `json:"script,omitempty"`
}

func (e *entry) id(share, p string) string {
	if e.Manifest == nil {
		return "unread:" + share + "/" + p
	}
	return e.Manifest.ID()
}

// reusable reports whether e still describes the file fi.
func (e *entry) reusable(fi FileInfo) bool {
	return e != nil && (e.Manifest != nil || e.Detail.Sidecar) &&
		e.Info.Size == fi.Size && e.Info.ModTime.Equal(fi.ModTime) && e.Info.Version == fi.Version
}

type refreshCounters struct {
	files, reused, hashed atomic.Int64
	bytes                 atomic.Int64
}

type shareResult struct {
	base    *shareMemo // what was known when the scan started
	entries map[string]*entry
	changed bool
	err     error // why the listing did not complete
	partial bool  // err is only about parts of the share; the rest was scanned
}

// Refresh scans the shares concurrently (at most Options.Workers files and
// max(Workers, 4) listings at a time) and rebuilds the library's objects.
// A file whose size, modification
// time and version are those of the last scan (in this process, or in
// Options.CacheDir) is not read again; new and changed files are hashed
// and inspected. Files with the same content on any shares become one
// Object with a Replica for each.
//
// A share that fails is listed in RefreshStats.Failed (and in Offline when
// it is ErrOffline); what the library knew of it is kept, its replicas
// marked Offline, so no object is lost. A broken file is an object with a
// Problem. The error is only for ctx: on cancellation Refresh returns
// promptly with ctx's error, keeping what it had finished.
func (l *Library) Refresh(ctx context.Context) (RefreshStats, error) {
	l.refresh.Lock()
	defer l.refresh.Unlock()
	start := time.Now()
	l.loadCache()

	var (
		c       refreshCounters
		wg      sync.WaitGroup
		sem     = make(chan struct{}, l.opts.Workers)
		results = make([]shareResult, len(l.shares))
	)
	// Listing waits on the share more than on the CPU: list more shares at
	// once than files are read, but not without bound.
	listing := make(chan struct{}, max(l.opts.Workers, 4))
	for i, s := range l.shares {
		wg.Go(func() {
			select {
			case listing <- struct{}{}:
				defer func() { <-listing }()
				results[i] = l.scanShare(ctx, s, sem, &c)
			case <-ctx.Done():
				results[i] = shareResult{err: ctx.Err()}
			}
		})
	}
	wg.Wait()

	st := RefreshStats{
		Shares:      len(l.shares),
		Files:       int(c.files.Load()),
		Reused:      int(c.reused.Load()),
		Hashed:      int(c.hashed.Load()),
		HashedBytes: c.bytes.Load(),
		Failed:      map[string]error{},
	}
	cancelled := ctx.Err()
	var save []string
	l.mu.Lock()
	for i, s := range l.shares {
		name, r := s.Name(), results[i]
		prev := l.memo[name]
		switch {
		case r.err == nil && cancelled == nil:
			if prev != nil && prev != r.base {
				// Replicate marked or added files during the scan.
				for p, e := range prev.entries {
					if n := r.entries[p]; n == nil && r.base != nil && r.base.entries[p] == nil || n != nil && e.ReplicaProblem != "" && n.ReplicaProblem == "" && n.reusable(e.Info) {
						r.entries[p] = e
					}
				}
			}
			l.memo[name] = &shareMemo{entries: r.entries}
			l.offline[name] = false
		default:
			// Keep what was known and add what was learned.
			merged := map[string]*entry{}
			if prev != nil {
				merged = maps.Clone(prev.entries)
			}
			maps.Copy(merged, r.entries)
			l.memo[name] = &shareMemo{entries: merged}
			if r.err != nil && !isCtxErr(r.err) {
				// A share read in part is not offline: what it could not
				// read is kept from before, the rest is as scanned.
				l.offline[name] = !r.partial
				st.Failed[name] = r.err
				if errors.Is(r.err, ErrOffline) {
					st.Offline = append(st.Offline, name)
				}
				l.log.Warn("library: share not scanned; keeping what was known of it", "share", name, "err", r.err)
			}
		}
		if r.changed || prev == nil && len(r.entries) > 0 {
			save = append(save, name)
		}
	}
	l.buildLocked()
	st.Objects = len(l.sorted)
	for _, o := range l.sorted {
		if o.Problem != "" {
			st.Problems++
		}
	}
	snap := map[string]*shareMemo{}
	for _, name := range save {
		snap[name] = l.memo[name]
	}
	l.mu.Unlock()
	for name, m := range snap {
		if err := l.saveCache(name, m); err != nil {
			l.log.Warn("library: cannot save the cache", "share", name, "err", err)
		}
	}
	st.Duration = time.Since(start)
	if cancelled != nil {
		return st, cancelled
	}
	return st, nil
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// scanShare lists one share and inspects its new and changed files.
func (l *Library) scanShare(ctx context.Context, s Share, sem chan struct{}, c *refreshCounters) shareResult {
	name := s.Name()
	l.mu.RLock()
	base := l.memo[name]
	l.mu.RUnlock()
	var prev map[string]*entry
	if base != nil {
		prev = base.entries
	}

	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		res     = shareResult{base: base, entries: make(map[string]*entry, len(prev))}
		fileErr error // a file's failure that stands for the whole share
	)
	seen := 0
	var partial []error
list:
	for fi, err := range s.List(ctx) {
		if err != nil {
			if errors.Is(err, ErrOffline) || isCtxErr(err) || ctx.Err() != nil {
				res.err = err
				break
			}
			// Part of the share could not be read: the rest is scanned,
			// and what was known of the part is kept.
			partial = append(partial, err)
			continue
		}
		seen++
		c.files.Add(1)
		if e := prev[fi.Name]; e.reusable(fi) {
			c.reused.Add(1)
			mu.Lock()
			res.entries[fi.Name] = e
			mu.Unlock()
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			res.err = ctx.Err()
			break list
		}
		wg.Go(func() {
			defer func() { <-sem }()
			e, err := l.scanFile(ctx, s, fi, c)
			mu.Lock()
			defer mu.Unlock()
			res.changed = true
			switch {
			case err == nil:
				res.entries[fi.Name] = e
			case isCtxErr(err) || errors.Is(err, ErrOffline):
				if fileErr == nil {
					fileErr = err
				}
			case errors.Is(err, ErrNotFound):
				// Removed since it was listed.
			default:
				l.log.Warn("library: cannot read file", "share", name, "path", fi.Name, "err", err)
				res.entries[fi.Name] = &entry{Info: fi, Detail: detail{Kind: kindByName(fi.Name), Unread: true, Problem: err.Error()}}
			}
		})
	}
	wg.Wait()
	if res.err == nil {
		res.err = fileErr
	}
	if res.err == nil && seen != len(prev) {
		res.changed = true
	}
	if res.err == nil && len(partial) > 0 {
		res.err = errors.Join(partial...)
		res.partial = true
	}
	return res
}

// scanFile hashes and inspects one file.
func (l *Library) scanFile(ctx context.Context, s Share, fi FileInfo, c *refreshCounters) (*entry, error) {
	f, err := s.Open(ctx, fi.Name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size := f.Size()
	e := &entry{Info: fi}
	if size != fi.Size {
		e.Info.Version = "" // changed since listed: look again next time
	}
	if isSidecar(fi.Name) {
		e.Detail = detail{Sidecar: true}
		data, err := readSmall(f, size)
		if err == nil {
			var m Metadata
			if m, err = parseSidecar(data); err == nil {
				e.Detail.Meta = &m
			}
		}
		if err != nil {
			e.Detail.Problem = err.Error()
		}
		return e, l.readErr(ctx, s, fi.Name, err)
	}
	if size > ChunkSize {
		select {
		case l.large <- struct{}{}:
			defer func() { <-l.large }()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m, err := hashFile(ctx, f, size, l.opts.Workers)
	if err != nil {
		if err := l.readErr(ctx, s, fi.Name, err); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("hash: %w", err)
	}
	c.hashed.Add(1)
	c.bytes.Add(size)
	e.Manifest = m
	e.Detail = inspect(fi.Name, f, size)
	if e.Detail.Problem != "" {
		l.log.Debug("library: broken file", "share", s.Name(), "path", fi.Name, "problem", e.Detail.Problem)
	}
	return e, nil
}

// readErr tells a read that failed because the share went away (or ctx
// ended) from one that failed for this file only, which it returns as nil.
func (l *Library) readErr(ctx context.Context, s Share, name string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, ErrOffline) {
		return err
	}
	if _, serr := s.Stat(ctx, name); errors.Is(serr, ErrOffline) || errors.Is(serr, ErrNotFound) {
		return serr
	}
	return nil
}

// smallBufs holds buffers for files of one chunk.
var smallBufs = sync.Pool{New: func() any { return new([]byte) }}

// hashFile returns the manifest of size bytes of r, as Hash does. A file
// of one chunk is read into a pooled buffer and hashed here, which spares
// Hash's per-worker chunk buffers for each of many small files.
func hashFile(ctx context.Context, r io.ReaderAt, size int64, workers int) (*Manifest, error) {
	if size > ChunkSize {
		return Hash(ctx, r, size, &HashOptions{Workers: workers})
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	bp := smallBufs.Get().(*[]byte)
	defer smallBufs.Put(bp)
	if int64(cap(*bp)) < size {
		*bp = make([]byte, size)
	}
	p := (*bp)[:size]
	if n, err := r.ReadAt(p, 0); n < len(p) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read chunk 0 at 0: %w", err)
	}
	cs := ChunkSizeFor(size)
	m := &Manifest{Algorithm: BLAKE3, Size: size, ChunkSize: cs, Chunks: make([][]byte, NumChunks(size, cs))}
	if size > 0 {
		m.Chunks[0] = m.Sum(p)
	}
	return m, nil
}

func readSmall(r io.ReaderAt, size int64) ([]byte, error) {
	if size > maxDefinitionSize {
		return nil, fmt.Errorf("%d bytes, more than the %d a definition may have: %w", size, maxDefinitionSize, ErrCorrupt)
	}
	b := make([]byte, size)
	if n, err := r.ReadAt(b, 0); n < len(b) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// inspect reads what a file's content says it is.
func inspect(name string, r io.ReaderAt, size int64) detail {
	d := detail{Kind: kindByName(name)}
	switch d.Kind {
	case KindVHD, KindVHDX:
		inspectDisk(&d, name, r, size)
	case KindRaw:
		d.Disk = &DiskInfo{Format: "raw", Type: "fixed", VirtualSize: size}
	case KindISO:
		info, err := ReadISO(r, size)
		if err != nil {
			d.Problem = err.Error()
		} else {
			d.ISO = info
		}
	case KindScript:
		d.Script = &ScriptInfo{Language: scriptLanguage(name)}
	case KindOther:
		if !strings.EqualFold(path.Ext(name), ".json") || size > maxDefinitionSize {
			break
		}
		data, err := readSmall(r, size)
		if err != nil {
			d.Problem = err.Error()
			break
		}
		def, err := parseDefinition(data)
		switch {
		case errors.Is(err, errNotDefinition):
		case err != nil:
			d.Problem = err.Error()
			if def != nil {
				d.Kind = def.kind
			}
		default:
			d.Kind = def.kind
			meta := def.meta
			d.Meta = &meta
			d.Hardware, d.GuestOS, d.Template = def.hardware, def.guestOS, def.template
			switch {
			case def.hardware != nil:
				d.Name = def.hardware.Name
			case def.guestOS != nil:
				d.Name = def.guestOS.Name
			case def.template != nil:
				d.Name = def.template.Name
			}
		}
	}
	return d
}

// inspectDisk reads a VHD or VHDX image's metadata. The parent of a
// differencing image is never opened: its locators come from a file of the
// share, which must not make the library read files elsewhere on this
// machine. What the image records of its parent is reported instead.
func inspectDisk(d *detail, name string, r io.ReaderAt, size int64) {
	disk, err := vhd.NewDiskOptions(r, size, &vhd.OpenOptions{OpenParent: refuseParent})
	if err == nil {
		defer disk.Close()
		info := disk.Info()
		d.Kind = kindOfFormat(info.Format)
		d.Disk = &DiskInfo{Format: info.Format.String(), Type: info.Type.String(), VirtualSize: info.Size, UUID: info.UUID, ParentUUID: info.ParentUUID}
		if info.Type == vhd.Differencing {
			var paths []string
			for _, l := range info.ParentLocators {
				if l.Platform == "W2ru" || l.Platform == "Wi2r" || l.Platform == "relative_path" {
					paths = append(paths, l.Path)
				}
			}
			if info.ParentName != "" {
				paths = append(paths, info.ParentName)
			}
			setParents(d, name, paths)
		}
		return
	}
	var pe *vhd.ParentError
	if !errors.As(err, &pe) {
		d.Problem = err.Error()
		return
	}
	// A differencing image whose parent is elsewhere: the image itself
	// decoded, only its chain did not.
	d.Disk = &DiskInfo{Type: vhd.Differencing.String(), ParentUUID: pe.ParentUUID}
	var head [512]byte
	if n, _ := r.ReadAt(head[:], 0); n == len(head) {
		switch {
		case bytes.HasPrefix(head[:], []byte("vhdxfile")):
			d.Kind, d.Disk.Format = KindVHDX, vhd.FormatVHDX.String()
		case bytes.HasPrefix(head[:], []byte("conectix")):
			d.Kind, d.Disk.Format = KindVHD, vhd.FormatVHD.String()
			d.Disk.VirtualSize = int64(binary.BigEndian.Uint64(head[48:56]))
			copy(d.Disk.UUID[:], head[68:84])
		}
	}
	var paths []string
	for _, t := range pe.Tried {
		if t.From != "W2ku" && t.From != "Wi2k" && t.From != "absolute_win32_path" && t.From != "volume_path" && t.From != "MacX" {
			paths = append(paths, t.Path)
		}
	}
	setParents(d, name, paths)
}

// setParents records the paths in the share, relative to the image name,
// where its parent may be.
func setParents(d *detail, name string, paths []string) {
	for _, p := range paths {
		p = strings.ReplaceAll(p, `\`, "/")
		if i := strings.LastIndex(p, ":"); i >= 0 { // a drive letter
			p = p[i+1:]
		}
		if path.IsAbs(p) {
			continue
		}
		p = path.Join(path.Dir(name), p)
		if CheckName(p) == nil && !slices.Contains(d.Parents, p) {
			d.Parents = append(d.Parents, p)
		}
	}
	if len(d.Parents) > 0 {
		d.Disk.ParentPath = d.Parents[0]
	}
}

func kindOfFormat(f vhd.Format) Kind {
	if f == vhd.FormatVHDX {
		return KindVHDX
	}
	return KindVHD
}

// buildLocked rebuilds the objects from the memo. l.mu must be held.
func (l *Library) buildLocked() {
	objs := map[string]*Object{}
	var sorted []*Object
	for _, s := range l.shares {
		name, site := s.Name(), s.Site()
		m := l.memo[name]
		if m == nil {
			continue
		}
		for _, p := range slices.Sorted(maps.Keys(m.entries)) {
			e := m.entries[p]
			if e.Detail.Sidecar {
				continue
			}
			id := e.id(name, p)
			o := objs[id]
			if o == nil {
				o = newObject(id, p, e)
				l.applySidecar(o, m, p)
				objs[id] = o
				sorted = append(sorted, o)
			}
			o.Replicas = append(o.Replicas, Replica{
				Share: name, Site: site, Path: p, ModTime: e.Info.ModTime,
				Offline: l.offline[name], Problem: e.ReplicaProblem,
			})
		}
	}
	slices.SortFunc(sorted, compareObjects)
	l.objects, l.sorted = objs, sorted
	for _, o := range sorted {
		switch {
		case o.Template != nil:
			l.resolveTemplate(o)
		case o.Disk != nil && o.Disk.Type == vhd.Differencing.String():
			l.resolveParent(o)
		}
	}
}

func newObject(id, p string, e *entry) *Object {
	d := e.Detail
	o := &Object{
		ID: id, Kind: d.Kind, Name: path.Base(p), Size: e.Info.Size, Problem: d.Problem,
		ISO: d.ISO, HardwareProfile: d.Hardware, GuestOSProfile: d.GuestOS, Script: d.Script,
	}
	if e.Manifest != nil {
		o.Size = e.Manifest.Size
	}
	if d.Name != "" {
		o.Name = d.Name
	}
	if d.Meta != nil {
		o.Metadata = *d.Meta
	}
	if d.Disk != nil { // resolved fields are per object: copy
		disk := *d.Disk
		o.Disk = &disk
	}
	if d.Template != nil {
		t := *d.Template
		o.Template = &t
	}
	return o
}

// applySidecar gives o the metadata of the sidecar next to the file p, if
// it has none of its own.
func (l *Library) applySidecar(o *Object, m *shareMemo, p string) {
	if o.Metadata.Family != "" || o.Metadata.Release != "" || len(o.Metadata.Tags) > 0 || o.Metadata.Owner != "" || o.Metadata.Description != "" {
		return
	}
	for _, sc := range sidecarNames(p) {
		e := m.entries[sc]
		if e == nil || !e.Detail.Sidecar {
			continue
		}
		if e.Detail.Meta != nil {
			o.Metadata = *e.Detail.Meta
		} else if o.Problem == "" {
			o.Problem = e.Detail.Problem
		}
		return
	}
}

// resolveRef finds the object a definition at p on share names by ref.
func (l *Library) resolveRef(share, p, ref string) []*Object {
	if ref == "" {
		return nil
	}
	if rel := path.Join(path.Dir(p), ref); CheckName(rel) == nil {
		if objs := l.findLocked(share + ":" + rel); len(objs) > 0 {
			return objs
		}
	}
	return l.findLocked(ref)
}

func (l *Library) resolveTemplate(o *Object) {
	t := o.Template
	r := o.Replicas[0]
	var missing []string
	one := func(ref string, kinds ...Kind) string {
		for _, c := range l.resolveRef(r.Share, r.Path, ref) {
			if slices.Contains(kinds, c.Kind) {
				return c.ID
			}
		}
		missing = append(missing, fmt.Sprintf("%q (%s)", ref, kinds[0]))
		return ""
	}
	t.HardwareProfileID = one(t.HardwareProfile, KindHardwareProfile)
	t.DiskIDs = nil
	for _, d := range t.Disks {
		t.DiskIDs = append(t.DiskIDs, one(d, KindVHD, KindVHDX, KindRaw))
	}
	if t.GuestOSProfile != "" {
		t.GuestOSProfileID = one(t.GuestOSProfile, KindGuestOSProfile)
	}
	if len(missing) > 0 && o.Problem == "" {
		o.Problem = "template references missing objects: " + strings.Join(missing, ", ")
	}
}

func (l *Library) resolveParent(o *Object) {
	d := o.Disk
	if d.Format == vhd.FormatVHD.String() && !d.ParentUUID.IsZero() {
		for _, c := range l.sorted {
			if c.Disk != nil && c != o && c.Disk.UUID == d.ParentUUID && c.Disk.Format == d.Format {
				d.ParentID = c.ID
				return
			}
		}
	}
	for _, r := range o.Replicas {
		e := l.memo[r.Share].entries[r.Path]
		for _, p := range e.Detail.Parents {
			if objs := l.findLocked(r.Share + ":" + p); len(objs) > 0 {
				d.ParentID, d.ParentPath = objs[0].ID, p
				return
			}
		}
	}
	if o.Problem == "" {
		o.Problem = fmt.Sprintf("differencing disk: parent %s (%s) is not in the library", cmpOr(d.ParentPath, "?"), d.ParentUUID)
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// The cache file of a share in Options.CacheDir.
type cacheFile struct {
	Version int               `json:"version"`
	Share   string            `json:"share"`
	Entries map[string]*entry `json:"entries"`
}

const cacheVersion = 1

func (l *Library) cachePath(share string) string {
	sum := sha256.Sum256([]byte(share))
	return filepath.Join(l.opts.CacheDir, "share-"+hex.EncodeToString(sum[:8])+".json")
}

// loadCache reads Options.CacheDir once, for the shares the library does
// not know yet. A cache that cannot be read is ignored.
func (l *Library) loadCache() {
	if l.loaded || l.opts.CacheDir == "" {
		return
	}
	l.loaded = true
	for _, s := range l.shares {
		name := s.Name()
		data, err := os.ReadFile(l.cachePath(name))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				l.log.Warn("library: cannot read the cache", "share", name, "err", err)
			}
			continue
		}
		var cf cacheFile
		if err := json.Unmarshal(data, &cf); err != nil || cf.Version != cacheVersion || cf.Share != name || cf.Entries == nil {
			l.log.Warn("library: ignoring an unusable cache", "share", name, "err", err)
			continue
		}
		for p, e := range cf.Entries {
			// The cache is a file on disk like any other: an entry that
			// does not hold together is dropped (and its file hashed again).
			if e == nil || CheckName(p) != nil || e.Manifest != nil && (checkManifest(e.Manifest) != nil || e.Manifest.Size != e.Info.Size) {
				delete(cf.Entries, p)
			}
		}
		l.mu.Lock()
		if l.memo[name] == nil {
			l.memo[name] = &shareMemo{entries: cf.Entries}
		}
		l.mu.Unlock()
	}
}

// saveCache writes what is known of a share to Options.CacheDir, whole or
// not at all.
func (l *Library) saveCache(share string, m *shareMemo) error {
	if l.opts.CacheDir == "" {
		return nil
	}
	if err := os.MkdirAll(l.opts.CacheDir, 0o755); err != nil {
		return err
	}
	data, err := json.Marshal(cacheFile{Version: cacheVersion, Share: share, Entries: m.entries})
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(l.opts.CacheDir, ".share-*.tmp")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), l.cachePath(share)); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// refuseParent is the OpenParent of inspectDisk: no parent is opened.
func refuseParent(string) (vhd.File, error) { return nil, fs.ErrNotExist }
