package p2v

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/vmmkit/vmmkit/vhd"
)

// Options control Capture. The zero value captures the whole source into a
// new dynamic image in the format dst's extension names.
type Options struct {
	// Format of a new image: vhd.FormatVHD or vhd.FormatVHDX. Zero means
	// the one dst's extension names (VHDX for ".vhdx").
	Format vhd.Format
	// Type of a new full image: vhd.Dynamic (the default) or vhd.Fixed.
	// Incremental captures into a child make a differencing image.
	Type vhd.Type
	// BlockSize of a new dynamic or differencing image; zero means 2 MiB,
	// which keeps an image of a scattered file system close to its used
	// size.
	BlockSize int64

	// ChunkSize is the unit that is hashed, compared and rewritten: a power
	// of two from 4 KiB to 64 MiB, zero meaning 1 MiB. An incremental
	// capture takes the previous manifest's.
	ChunkSize int64
	// Parallel is how many chunk reads are in flight; zero means 4.
	Parallel int

	// Previous is the image of an earlier capture of the same source. Its
	// manifest (ManifestPath) says what it holds, so only changed chunks
	// are written: into dst as a differencing child of Previous (history
	// kept), or with InPlace into Previous itself (dst must then be empty
	// or Previous). Recapturing an image in place invalidates the
	// differencing images made from it earlier: VHDX refuses to open them
	// (the parent's data write GUID changed) and Capture refuses them as
	// Previous (their manifest records the parent's earlier pass).
	Previous string
	InPlace  bool

	// Snapshotter, when set, makes the capture consistent: the passes run
	// live until one changes at most ConvergeBytes (or MaxPasses ran), then
	// the source is frozen for one last pass and thawed. Nil captures in a
	// single live pass, which is consistent only for an idle or offline
	// source.
	Snapshotter Snapshotter
	// MaxFreeze bounds how long the source stays frozen; the source is
	// thawed when it runs out, whatever the pass is doing, and the capture
	// converges again and retries (three attempts). Zero means 10 s.
	MaxFreeze time.Duration
	// ConvergeBytes: a live pass that changed at most this many bytes is
	// followed by the frozen one. Zero means 64 MiB.
	ConvergeBytes int64
	// MaxPasses bounds the live passes before freezing. Zero means 8.
	MaxPasses int

	// ZeroBadSectors makes unreadable sectors read as zeros instead of
	// failing the capture; Result.BadRanges lists them.
	ZeroBadSectors bool

	// Layout, when set, replaces the allocation map Capture reads from the
	// source's file systems (see Analyze and Analyzer) in every pass.
	Layout *Layout

	// Progress, when set, is called from Capture's goroutine a few times a
	// second and at the end of every pass.
	Progress func(Progress)
}

// Progress reports how far a capture is.
type Progress struct {
	Pass   int
	Frozen bool    // the pass runs with the source frozen
	Done   int64   // bytes of the source dealt with in this pass
	Total  int64   // bytes of the source
	Rate   float64 // bytes of the source per second in this pass
	ETA    time.Duration
}

// PassResult describes one pass over the source.
type PassResult struct {
	Frozen   bool
	Read     int64 // bytes read from the source
	Skipped  int64 // bytes not read: unused by the file systems, or done before an interruption
	Written  int64 // bytes written to the image
	Changed  int   // chunks written
	Duration time.Duration
}

// Result describes a finished capture.
type Result struct {
	Image    string // the image written
	Manifest string // its manifest
	Mode     string // "full", "child" or "in-place"
	Resumed  bool   // an interrupted capture was continued
	Layout   *Layout
	Passes   []PassResult

	Read, Skipped, Written int64 // sums over the passes
	Changed                int   // chunks written, over the passes

	// BadRanges lists the sectors that could not be read in any pass of
	// this call and were captured as zeros (Options.ZeroBadSectors). A
	// resumed capture does not re-read chunks finished before the
	// interruption, so it does not list their bad sectors again.
	BadRanges []Range
	// FreezeTime is how long the source stayed frozen in the pass that
	// succeeded; FreezeAttempts counts the freezes, including ones that ran
	// out of MaxFreeze.
	FreezeTime     time.Duration
	FreezeAttempts int
	Duration       time.Duration
}

// A ReadError reports sectors of the source that could not be read.
type ReadError struct {
	Source string
	Range  Range
	Err    error
}

func (e *ReadError) Error() string {
	return fmt.Sprintf("p2v: reading %s bytes %d-%d: %v", e.Source, e.Range.Off, e.Range.End()-1, e.Err)
}

func (e *ReadError) Unwrap() error { return e.Err }

// ErrFreezeTimeout reports a frozen pass that did not finish within
// Options.MaxFreeze in any attempt.
var ErrFreezeTimeout = errors.New("p2v: the frozen pass did not finish within MaxFreeze")

const (
	captureFull    = 1
	captureChild   = 2
	captureInPlace = 3

	defaultChunk      = 1 << 20
	maxFreezeAttempts = 3
)

// testEvent, when a test sets testHook, reports the steps of the write
// protocol in the order they happen.
var testHook func(event string)

func testEvent(e string) {
	if testHook != nil {
		testHook(e)
	}
}

// checkpointBytes is how much of the source a batch covers: the work a
// crash can make a resumed capture redo. Tests lower it.
var checkpointBytes int64 = 128 << 20

var modeNames = map[uint32]string{captureFull: "full", captureChild: "child", captureInPlace: "in-place"}

// Capture copies the disk src into the image dst and writes the image's
// manifest beside it (ManifestPath). It reads only the chunks that the
// source's file systems use (see Analyze), writes no all-zero data into a
// new image, and with Options.Previous writes only the chunks whose content
// changed since that capture.
//
// Capture is resumable: until it finishes, a journal beside the image
// records what is done, and calling Capture again with the same arguments
// after a crash, a kill or a cancelled ctx continues where it stopped and
// ends with the image an uninterrupted run makes. A previous image is never
// written unless Options.InPlace asks for it; an interrupted in-place
// capture must be resumed before the image is used again.
func Capture(ctx context.Context, src Source, dst string, opts *Options) (*Result, error) {
	start := time.Now()
	c, err := newCapturer(src, dst, opts)
	if err != nil {
		return nil, err
	}
	if cv, ok := c.o.Snapshotter.(Coverer); ok && cv.Covers(c.image) {
		return nil, fmt.Errorf("p2v: image %s is on the file system that would be frozen", c.image)
	}
	if d, ok := src.(*Device); ok && c.o.Snapshotter != nil && d.block && !d.direct {
		return nil, fmt.Errorf("p2v: %s could not be opened with O_DIRECT, and without it a pass may read blocks the device's cache kept from an earlier pass; a consistent capture needs it", d.name)
	}
	if err := c.open(); err != nil {
		return nil, err
	}
	res, err := c.run(ctx)
	if err != nil {
		c.abort()
		return nil, err
	}
	if err := c.finish(); err != nil {
		return nil, err
	}
	res.Duration = time.Since(start)
	return res, nil
}

// capturer holds the state of one Capture call.
type capturer struct {
	src   Source
	o     Options
	mode  uint32
	image string
	size  int64
	chunk int64
	n     int64

	base *Manifest // previous capture; nil for a full one
	j    *journal
	img  *vhd.Disk
	res  Result

	cur   []Hash  // what the image holds, chunk by chunk
	state []uint8 // replayed from the journal
	fresh []bool  // chunk never written in a new full image: holes read as zeros

	chunkSet bool // the caller chose the chunk size
	unsynced bool // the image has writes not yet synced
	zeros    zeroHashes
}

func newCapturer(src Source, dst string, opts *Options) (*capturer, error) {
	c := &capturer{src: src, zeros: zeroHashes{}}
	if opts != nil {
		c.o = *opts
	}
	o := &c.o
	c.size = src.Size()
	if c.size <= 0 {
		return nil, fmt.Errorf("p2v: source %s has size %d", src.Name(), c.size)
	}
	switch {
	case o.Previous == "" && o.InPlace:
		return nil, errors.New("p2v: InPlace needs Previous, the image to update")
	case o.Previous == "":
		c.mode, c.image = captureFull, dst
	case o.InPlace:
		if dst != "" && dst != o.Previous {
			return nil, fmt.Errorf("p2v: an in-place capture writes into Previous (%s), not %s", o.Previous, dst)
		}
		c.mode, c.image = captureInPlace, o.Previous
	default:
		c.mode, c.image = captureChild, dst
	}
	if c.image == "" {
		return nil, errors.New("p2v: no destination image")
	}
	c.chunkSet = o.ChunkSize != 0
	if o.ChunkSize == 0 {
		o.ChunkSize = defaultChunk
	}
	if o.Layout != nil && o.Layout.Size != c.size {
		return nil, fmt.Errorf("p2v: Options.Layout describes a %d-byte disk, the source %s is %d bytes", o.Layout.Size, src.Name(), c.size)
	}
	if o.ChunkSize < 4096 || o.ChunkSize > 64<<20 || o.ChunkSize&(o.ChunkSize-1) != 0 {
		return nil, fmt.Errorf("p2v: chunk size %d is not a power of two from 4 KiB to 64 MiB", o.ChunkSize)
	}
	if o.BlockSize == 0 {
		o.BlockSize = 2 << 20
	}
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.MaxFreeze <= 0 {
		o.MaxFreeze = 10 * time.Second
	}
	if o.ConvergeBytes <= 0 {
		o.ConvergeBytes = 64 << 20
	}
	if o.MaxPasses <= 0 {
		o.MaxPasses = 8
	}
	c.res.Image, c.res.Manifest, c.res.Mode = c.image, ManifestPath(c.image), modeNames[c.mode]
	return c, nil
}

// open reads the previous manifest and the journal, and opens or creates the
// image, checking that all of them belong together.
func (c *capturer) open() error {
	if c.mode != captureFull {
		m, err := ReadManifest(ManifestPath(c.o.Previous))
		if err != nil {
			return err
		}
		if m.DiskSize != c.size {
			return &ManifestError{Path: ManifestPath(c.o.Previous), Reason: fmt.Sprintf("records a %d-byte disk, but %s is %d bytes", m.DiskSize, c.src.Name(), c.size)}
		}
		if c.chunkSet && c.o.ChunkSize != m.ChunkSize {
			return fmt.Errorf("p2v: chunk size %d differs from the previous capture's %d", c.o.ChunkSize, m.ChunkSize)
		}
		c.o.ChunkSize = m.ChunkSize
		c.base = m
	}
	c.chunk = c.o.ChunkSize
	c.n = chunkCount(c.size, c.chunk)
	if c.n > maxChunks {
		return fmt.Errorf("p2v: %d-byte source needs more than %d chunks of %d bytes", c.size, maxChunks, c.chunk)
	}

	j, state, hashes, err := openJournal(journalPath(c.image))
	if errors.Is(err, errTornJournal) {
		// Killed while creating the journal, before the image was made
		// (the journal's header is synced first): start over.
		if _, serr := os.Lstat(c.image); !errors.Is(serr, fs.ErrNotExist) || c.mode == captureInPlace {
			return &JournalError{Path: journalPath(c.image), Reason: "header incomplete, and the image exists"}
		}
		if err := os.Remove(journalPath(c.image)); err != nil {
			return fmt.Errorf("p2v: %w", err)
		}
		j, err = nil, nil
	}
	if err != nil {
		return err
	}
	if j != nil {
		keep, err := c.adoptJournal(j)
		if err != nil {
			j.close()
			return err
		}
		if keep {
			c.res.Resumed = true
		} else {
			state, hashes = nil, nil
		}
	}
	c.state = state
	if c.state == nil {
		c.state = make([]uint8, c.n)
	}

	c.cur = make([]Hash, c.n)
	c.fresh = make([]bool, c.n)
	for i := range c.n {
		switch {
		case c.state[i] == chunkDone:
			c.cur[i] = hashes[i]
		case c.base != nil:
			c.cur[i] = c.base.Hashes[i]
		default:
			c.cur[i] = c.zeros.of(c.chunkLen(i))
			c.fresh[i] = c.state[i] == chunkUnknown
		}
	}
	if err := c.openImage(); err != nil {
		if c.j != nil {
			c.j.close()
		}
		return err
	}
	return nil
}

// adoptJournal accepts the journal of an interrupted capture if it belongs
// to this one.
// It reports false, having removed the journal, when the capture it served
// had finished.
func (c *capturer) adoptJournal(j *journal) (bool, error) {
	h := j.hdr
	var base [16]byte
	if c.base != nil {
		base = c.base.Pass
	}
	if c.mode == captureInPlace && c.base != nil && c.base.Pass == h.Pass {
		// The interrupted capture got as far as writing its manifest;
		// only the journal's removal was lost.
		return false, j.remove()
	}
	if h.Mode != c.mode || h.ChunkSize != c.chunk || h.DiskSize != c.size {
		return false, &JournalError{Path: j.path, Reason: fmt.Sprintf("belongs to a different capture (a %s capture of a %d-byte disk in %d-byte chunks); finish that one, or delete the journal and the image to start over", modeNames[h.Mode], h.DiskSize, h.ChunkSize)}
	}
	if h.Base != base {
		return false, &JournalError{Path: j.path, Reason: fmt.Sprintf("continues from previous capture %x, but %s now records capture %x; delete the journal and the image to start over", h.Base[:4], ManifestPath(c.o.Previous), base[:4])}
	}
	c.j = j
	return true, nil
}

func (c *capturer) newJournal(uuid vhd.UUID) error {
	h := journalHeader{Mode: c.mode, ChunkSize: c.chunk, DiskSize: c.size, Chunks: c.n, Image: uuid}
	h.Pass = [16]byte(vhd.NewUUID())
	if c.base != nil {
		h.Base = c.base.Pass
	}
	j, err := createJournal(journalPath(c.image), h)
	if err != nil {
		return err
	}
	c.j = j
	return nil
}

func (c *capturer) openImage() error {
	switch c.mode {
	case captureInPlace:
		img, err := vhd.OpenFile(c.image, os.O_RDWR, nil)
		if err != nil {
			return fmt.Errorf("p2v: opening previous image %s: %w", c.image, err)
		}
		skip := func(i int) bool { return c.state[i] != chunkUnknown }
		if err := c.base.checkAgainst(ManifestPath(c.image), img, skip); err != nil {
			img.Close()
			return err
		}
		if c.j == nil {
			if err := c.newJournal(img.Info().UUID); err != nil {
				img.Close()
				return err
			}
		}
		c.img = img
		return nil
	case captureChild:
		if err := checkNoJournal(c.o.Previous); err != nil {
			return err
		}
		prev, err := vhd.Open(c.o.Previous)
		if err != nil {
			return fmt.Errorf("p2v: opening previous image %s: %w", c.o.Previous, err)
		}
		err = c.base.checkAgainst(ManifestPath(c.o.Previous), prev, nil)
		prev.Close()
		if err != nil {
			return err
		}
	}
	if c.j != nil {
		// Resuming: the image may or may not have been made before the
		// interruption.
		img, err := vhd.OpenFile(c.image, os.O_RDWR, nil)
		if err != nil && c.j.empty && !errors.Is(err, fs.ErrNotExist) {
			// Nothing was written through the journal, so the image
			// can only be one whose creation was cut short: make it anew.
			if errors.Is(err, vhd.ErrFormat) || errors.Is(err, vhd.ErrChecksum) {
				if rerr := os.Remove(c.image); rerr != nil {
					return fmt.Errorf("p2v: %w", rerr)
				}
				err = fs.ErrNotExist
			}
		}
		if err == nil {
			if img.Info().UUID != c.j.hdr.Image {
				img.Close()
				return &JournalError{Path: c.j.path, Reason: fmt.Sprintf("was written for image %s, but %s is %s", c.j.hdr.Image, c.image, img.Info().UUID)}
			}
			c.img = img
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("p2v: opening %s to resume: %w", c.image, err)
		}
		if !c.j.empty {
			return &JournalError{Path: c.j.path, Reason: fmt.Sprintf("records chunks written to %s, which is gone; delete the journal to start over", c.image)}
		}
		return c.createImage(c.j.hdr.Image)
	}
	if _, err := os.Lstat(c.image); err == nil {
		return fmt.Errorf("p2v: %s: %w (and no journal of an interrupted capture is beside it)", c.image, fs.ErrExist)
	}
	uuid := vhd.NewUUID()
	if err := c.newJournal(uuid); err != nil {
		return err
	}
	if err := c.createImage(uuid); err != nil {
		c.j.remove()
		c.j = nil
		return err
	}
	return nil
}

// checkNoJournal refuses an image that an interrupted capture is writing:
// until it is resumed, it holds chunks from two moments.
func checkNoJournal(image string) error {
	if _, err := os.Stat(journalPath(image)); err == nil {
		return &JournalError{Path: journalPath(image), Reason: fmt.Sprintf("a capture into %s was interrupted; resume it (run the same capture again) before using the image", image)}
	}
	return nil
}

func (c *capturer) createImage(uuid vhd.UUID) error {
	co := &vhd.CreateOptions{Format: c.o.Format, Type: c.o.Type, BlockSize: c.o.BlockSize, UUID: uuid}
	size := c.size
	if c.mode == captureChild {
		co.Type, co.Parent, size = vhd.Differencing, c.o.Previous, 0
	}
	img, err := vhd.Create(c.image, size, co)
	if err != nil {
		return err
	}
	if img.Size() < c.size {
		img.Close()
		os.Remove(c.image)
		return fmt.Errorf("p2v: image %s holds %d bytes, the source %d", c.image, img.Size(), c.size)
	}
	c.img = img
	return nil
}

func (c *capturer) chunkLen(i int64) int64 { return min(c.chunk, c.size-i*c.chunk) }

// run makes the passes: one, or converging live passes and a frozen one.
func (c *capturer) run(ctx context.Context) (*Result, error) {
	if c.o.Snapshotter == nil {
		if _, err := c.pass(ctx, false); err != nil {
			return nil, err
		}
		return &c.res, nil
	}
	for live := 1; ; live++ {
		pr, err := c.pass(ctx, false)
		if err != nil {
			return nil, err
		}
		// A resumed first pass skipped what was done before, so what it
		// wrote says nothing of how far the image is from the source.
		resumedPass := live == 1 && c.res.Resumed
		if (pr.Written <= c.o.ConvergeBytes && !resumedPass) || live >= c.o.MaxPasses {
			break
		}
	}
	for attempt := 1; ; attempt++ {
		c.res.FreezeAttempts = attempt
		frozen, err := c.frozenPass(ctx)
		c.res.FreezeTime = frozen
		if err == nil {
			return &c.res, nil
		}
		if !errors.Is(err, ErrFreezeTimeout) {
			return nil, err
		}
		if attempt == maxFreezeAttempts {
			return nil, fmt.Errorf("%w: %d attempts of at most %v each; the source was thawed each time (raise MaxFreeze, or lower the write load)", err, attempt, c.o.MaxFreeze)
		}
		if _, err := c.pass(ctx, false); err != nil {
			return nil, err
		}
	}
}

// frozenPass freezes the source, makes one pass and thaws it. A watchdog
// cancels the pass and thaws the source after MaxFreeze, whatever the pass is
// doing; a pass the watchdog interrupted does not count, even if it ended at
// the same moment. The thaw also runs if the pass panics.
func (c *capturer) frozenPass(ctx context.Context) (time.Duration, error) {
	thaw, err := c.o.Snapshotter.Freeze(ctx)
	if err != nil {
		return 0, fmt.Errorf("p2v: freezing the source: %w", err)
	}
	start := time.Now()
	var once sync.Once
	var thawErr error
	var frozen time.Duration
	doThaw := func() {
		once.Do(func() { thawErr = thaw(); frozen = time.Since(start) })
	}
	defer doThaw()
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(c.o.MaxFreeze, func() {
		cancel(ErrFreezeTimeout) // first: no chunk read after the thaw is accepted
		doThaw()
	})
	_, err = c.pass(fctx, true)
	if !watchdog.Stop() {
		err = ErrFreezeTimeout
	}
	doThaw()
	if err != nil && ctx.Err() == nil && context.Cause(fctx) == ErrFreezeTimeout {
		err = ErrFreezeTimeout
	}
	if thawErr != nil {
		err = errors.Join(err, fmt.Errorf("p2v: thawing the source: %w", thawErr))
	}
	return frozen, err
}

// abort leaves the image and journal for a resume.
func (c *capturer) abort() {
	if c.img != nil {
		c.img.Close()
	}
	if c.j != nil {
		c.j.close()
	}
}

// finish closes the image, writes the manifest and removes the journal.
func (c *capturer) finish() error {
	uuid := c.img.Info().UUID
	if err := c.img.Close(); err != nil {
		c.j.close()
		return fmt.Errorf("p2v: closing %s: %w", c.image, err)
	}
	m := &Manifest{ChunkSize: c.chunk, DiskSize: c.size, Source: c.src.Name(), Image: uuid,
		Pass: c.j.hdr.Pass, Created: time.Now().UTC(), Hashes: c.cur}
	switch c.mode {
	case captureChild:
		m.Parent = c.base.Pass
	case captureInPlace:
		m.Parent = c.base.Parent
	}
	if err := m.WriteFile(ManifestPath(c.image)); err != nil {
		c.j.close()
		return err
	}
	return c.j.remove()
}

// A chunkJob is one chunk on its way from the source to the image.
type chunkJob struct {
	idx   int64
	buf   []byte
	used  []Range // parts to read, relative to the chunk; empty: all free
	skip  bool    // known from the journal: do not read
	hash  Hash
	runs  []Range // non-zero 4 KiB pages, relative to the chunk
	read  int64
	bad   []Range
	err   error
	ready chan struct{}
}

// pass reads every chunk the layout says is used, hashes it, and writes the
// chunks whose hash differs from what the image holds.
func (c *capturer) pass(ctx context.Context, frozen bool) (PassResult, error) {
	start := time.Now()
	first := len(c.res.Passes) == 0
	pr := PassResult{Frozen: frozen}
	if err := c.checkSize(); err != nil {
		return pr, err
	}
	layout, err := c.layout(frozen)
	if err != nil {
		return pr, err
	}
	c.res.Layout = layout

	// On an error the pass returns without waiting for its goroutines: a
	// read can hang in the kernel on a failing disk. They end by themselves
	// once their read returns (the feeder stops on ctx; the workers when the
	// feeder closes jobs), touching nothing but the source and their buffers.
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	par := c.o.Parallel
	pool := make(chan *chunkJob, par+2)
	for range par + 2 {
		pool <- &chunkJob{buf: alignedBuf(int(c.chunk))}
	}
	jobs := make(chan *chunkJob)
	order := make(chan *chunkJob, par+2)
	for range par {
		wg.Go(func() {
			for j := range jobs {
				c.readChunk(j)
				close(j.ready)
			}
		})
	}
	wg.Go(func() { // feeder: chunks in order
		defer close(order)
		defer close(jobs)
		free := layout.Free
		for i := range c.n {
			var j *chunkJob
			select {
			case j = <-pool:
			case <-ctx.Done():
				return
			}
			off := i * c.chunk
			j.idx, j.skip, j.err, j.bad, j.read = i, first && c.state[i] == chunkDone, nil, nil, 0
			j.ready = make(chan struct{})
			j.used, free = usedIn(free, off, c.chunkLen(i), j.used[:0])
			order <- j
			select {
			case jobs <- j:
			case <-ctx.Done():
				close(j.ready)
				return
			}
		}
	})

	w := c.newBatchWriter()
	prog := progressor{fn: c.o.Progress, pass: len(c.res.Passes) + 1, frozen: frozen, total: c.size, start: start}
	for j := range order {
		select {
		case <-j.ready:
		case <-ctx.Done():
			return pr, context.Cause(ctx)
		}
		if err := ctx.Err(); err != nil {
			return pr, context.Cause(ctx)
		}
		if j.err != nil {
			cancel()
			return pr, j.err
		}
		if err := w.add(j, &pr); err != nil {
			cancel()
			return pr, err
		}
		if len(j.bad) > 0 {
			c.res.BadRanges = mergeRanges(append(c.res.BadRanges, j.bad...))
		}
		prog.update((j.idx)*c.chunk + c.chunkLen(j.idx))
		pool <- j
	}
	if err := ctx.Err(); err != nil {
		return pr, context.Cause(ctx)
	}
	wg.Wait()
	if err := w.flush(); err != nil {
		return pr, err
	}
	if err := c.checkSize(); err != nil {
		return pr, err
	}
	pr.Duration = time.Since(start)
	prog.finish()
	c.res.Passes = append(c.res.Passes, pr)
	c.res.Read += pr.Read
	c.res.Skipped += pr.Skipped
	c.res.Written += pr.Written
	c.res.Changed += pr.Changed
	return pr, nil
}

// layout returns the allocation map for a pass. Live passes of a converging
// capture accept the maps of file systems in use: the frozen pass, which
// reads a clean one, corrects whatever they got wrong.
func (c *capturer) layout(frozen bool) (*Layout, error) {
	if c.o.Layout != nil {
		return c.o.Layout, nil
	}
	if a, ok := c.src.(Analyzer); ok {
		return a.Analyze()
	}
	return analyze(c.src, c.size, c.o.Snapshotter != nil && !frozen)
}

// checkSize fails when the source is now smaller than when the capture
// began (a source that can tell: see Device).
func (c *capturer) checkSize() error {
	s, ok := c.src.(Sizer)
	if !ok {
		return nil
	}
	n, err := s.CurrentSize()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrSourceChanged, c.src.Name(), err)
	}
	if n < c.size {
		return fmt.Errorf("%w: %s is now %d bytes, was %d", ErrSourceChanged, c.src.Name(), n, c.size)
	}
	return nil
}

// usedIn returns the parts of [off, off+n) that free does not cover,
// relative to off, and the rest of free for the next chunk.
func usedIn(free []Range, off, n int64, out []Range) ([]Range, []Range) {
	for len(free) > 0 && free[0].End() <= off {
		free = free[1:]
	}
	pos, end := off, off+n
	for _, f := range free {
		if f.Off >= end {
			break
		}
		if f.Off > pos {
			out = append(out, Range{Off: pos - off, Len: f.Off - pos})
		}
		pos = max(pos, f.End())
		if pos >= end {
			break
		}
	}
	if pos < end {
		out = append(out, Range{Off: pos - off, Len: end - pos})
	}
	return out, free
}

// readChunk fills j.buf with the chunk's content (free parts as zeros),
// hashes it and finds its non-zero pages.
func (c *capturer) readChunk(j *chunkJob) {
	if j.skip {
		return
	}
	n := c.chunkLen(j.idx)
	buf := j.buf[:n]
	off := j.idx * c.chunk
	pos := int64(0)
	for _, u := range j.used {
		clear(buf[pos:u.Off])
		if err := c.readRange(j, buf[u.Off:u.End()], off+u.Off); err != nil {
			j.err = err
			return
		}
		j.read += u.Len
		pos = u.End()
	}
	clear(buf[pos:])
	j.hash = hashOf(buf)
	j.runs = nonZeroRuns(buf, j.runs[:0])
}

func (c *capturer) readRange(j *chunkJob, p []byte, off int64) error {
	n, err := c.src.ReadAt(p, off)
	if n == len(p) {
		return nil // io.ReaderAt may say io.EOF with a full read at the end
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %s ends before byte %d", ErrSourceChanged, c.src.Name(), off+int64(len(p)))
	}
	if !c.o.ZeroBadSectors {
		return &ReadError{Source: c.src.Name(), Range: Range{Off: off, Len: int64(len(p))}, Err: err}
	}
	// Find the bad sectors one by one; keep the good ones. A device read
	// with O_DIRECT reads 4 KiB at a time whatever is asked, so that is the
	// unit there.
	unit := int64(sector)
	if d, ok := c.src.(*Device); ok && d.direct {
		unit = directAlign
	}
	for s := int64(0); s < int64(len(p)); {
		at := off + s
		e := min((at/unit+1)*unit-off, int64(len(p))) // to the next unit boundary
		b := p[s:e]
		s = e
		n, err := c.src.ReadAt(b, at)
		if n == len(b) {
			continue
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: %s ends before byte %d", ErrSourceChanged, c.src.Name(), at+int64(len(b)))
		}
		clear(b)
		if k := len(j.bad); k > 0 && j.bad[k-1].End() == at {
			j.bad[k-1].Len += int64(len(b))
		} else {
			j.bad = append(j.bad, Range{Off: at, Len: int64(len(b))})
		}
	}
	return nil
}

const page = 4096

var zeroPage [page]byte

// nonZeroRuns appends the runs of 4 KiB pages of b that are not all zero.
func nonZeroRuns(b []byte, out []Range) []Range {
	for p := 0; p < len(b); p += page {
		e := min(p+page, len(b))
		if bytes.Equal(b[p:e], zeroPage[:e-p]) {
			continue
		}
		if k := len(out); k > 0 && out[k-1].End() == int64(p) {
			out[k-1].Len += int64(e - p)
		} else {
			out = append(out, Range{Off: int64(p), Len: int64(e - p)})
		}
	}
	return out
}

// batchWriter writes changed chunks under the journal's protocol: an intent
// for the batch before its first write, and after the batch the image synced
// and a done record with the batch's hashes.
type batchWriter struct {
	c      *capturer
	first  int64 // first chunk of the batch
	hashes []Hash
	intent bool // intent recorded for this batch
	wrote  bool
	per    int64 // chunks per batch
}

func (c *capturer) newBatchWriter() *batchWriter {
	return &batchWriter{c: c, per: max(1, checkpointBytes/c.chunk)}
}

func (w *batchWriter) add(j *chunkJob, pr *PassResult) error {
	c := w.c
	if len(w.hashes) == 0 {
		w.first = j.idx
	}
	n := c.chunkLen(j.idx)
	h := c.cur[j.idx]
	if j.skip {
		pr.Skipped += n
	} else {
		h = j.hash
		pr.Read += j.read
		pr.Skipped += n - j.read
		if h != c.cur[j.idx] || c.state[j.idx] == chunkDirty {
			if err := w.write(j, n, pr); err != nil {
				return err
			}
		}
	}
	c.cur[j.idx] = h
	w.hashes = append(w.hashes, h)
	if int64(len(w.hashes)) >= w.per || j.idx == c.n-1 {
		return w.flush()
	}
	return nil
}

func (w *batchWriter) write(j *chunkJob, n int64, pr *PassResult) error {
	c := w.c
	if !w.intent {
		last := min(w.first+w.per, c.n)
		if err := c.j.intent(w.first, last-w.first); err != nil {
			return err
		}
		w.intent = true
	}
	off := j.idx * c.chunk
	runs := []Range{{Off: 0, Len: n}}
	if c.fresh[j.idx] {
		runs = j.runs // a new image reads zeros where nothing is written
	}
	for _, r := range runs {
		testEvent("write")
		if _, err := c.img.WriteAt(j.buf[r.Off:r.End()], off+r.Off); err != nil {
			return fmt.Errorf("p2v: writing %s at byte %d: %w", c.image, off+r.Off, err)
		}
		pr.Written += r.Len
	}
	c.fresh[j.idx] = false
	c.state[j.idx] = chunkUnknown
	c.unsynced = true
	pr.Changed++
	w.wrote = true
	return nil
}

// flush ends the batch: the image synced, then the done record.
func (w *batchWriter) flush() error {
	if len(w.hashes) == 0 {
		return nil
	}
	c := w.c
	// Any write not yet synced, of this batch or of a pass that stopped
	// before its flush, reaches the disk before a done record can:
	// records are appended in order, so a later fsync of the journal would
	// make this one durable too.
	if c.unsynced {
		if err := c.img.Sync(); err != nil {
			return fmt.Errorf("p2v: syncing %s: %w", c.image, err)
		}
		testEvent("image sync")
		c.unsynced = false
	}
	testEvent("done")
	if err := c.j.done(w.first, w.hashes, w.wrote); err != nil {
		return err
	}
	for i := w.first; i < w.first+int64(len(w.hashes)); i++ {
		c.state[i] = chunkUnknown
	}
	w.hashes, w.intent, w.wrote = w.hashes[:0], false, false
	return nil
}

// progressor throttles progress reports.
type progressor struct {
	fn     func(Progress)
	pass   int
	frozen bool
	total  int64
	start  time.Time
	last   time.Time
	done   int64
}

func (p *progressor) update(done int64) {
	p.done = done
	if p.fn == nil || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.report()
}

func (p *progressor) finish() {
	if p.fn != nil {
		p.done = p.total
		p.report()
	}
}

func (p *progressor) report() {
	el := time.Since(p.start).Seconds()
	pr := Progress{Pass: p.pass, Frozen: p.frozen, Done: p.done, Total: p.total}
	if el > 0 {
		pr.Rate = float64(p.done) / el
	}
	if pr.Rate > 0 {
		pr.ETA = time.Duration(float64(p.total-p.done) / pr.Rate * float64(time.Second))
	}
	p.fn(pr)
}
