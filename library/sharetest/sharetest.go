// Package sharetest is the conformance suite every library.Share passes:
// Run runs one set of subtests (reads of files written through uploads,
// names with folders, spaces and Unicode, invalid names, hidden
// bookkeeping, uploads that stay invisible until Commit, parts in any order
// and in parallel, resume, Commit that never replaces a file, Abort,
// Rename, Remove, the io.ReaderAt contract, empty files, cancelled
// contexts, and, when the setup can take the share offline, ErrOffline)
// against a share.
//
// A backend's package calls it from a test named TestConformance:
//
//	func TestConformance(t *testing.T) {
//		sharetest.Run(t, &sharetest.Setup{
//			New: func(t *testing.T) library.Share {
//				s, err := library.NewDirShare("test", "site-a", t.TempDir())
//				require.NoError(t, err)
//				t.Cleanup(func() { s.Close() })
//				return s
//			},
//		})
//	}
//
// # What the suite expects
//
// Everything the library package documents for a Share, and these rules
// where the contract leaves room:
//
//   - Every error a Share or an Upload returns is a *library.ShareError
//     matching the documented sentinel with errors.Is. File.ReadAt follows
//     io.ReaderAt: io.EOF itself at the end of the file.
//   - A method called with a ctx that is already done fails with an error
//     matching ctx's error and changes nothing.
//   - An Upload whose Create a caller drops (no Commit, no Abort) is
//     resumed by a later Create of the same name, size and part size,
//     with its parts and their sums; Create with another size starts
//     afresh and resumes nothing.
//   - Commit with parts missing fails and keeps the upload, so the
//     missing parts can still be written and committed.
//   - Commit onto an existing name fails with ErrExist and keeps the
//     upload: after the other file is removed, Commit succeeds.
//   - Rename and Remove act on files only; a folder that holds files is
//     neither a file nor an error of its own (Stat says ErrNotFound).
//
// Each subtest gets a fresh empty share from Setup.New, so subtests do
// not see each other's files.
package sharetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/library"
)

// Setup is what the suite needs from a share backend.
type Setup struct {
	// New returns a fresh, empty share; the suite calls it once per
	// subtest. It may register cleanups with t.Cleanup.
	New func(t *testing.T) library.Share
	// PartSize is the part size the suite uses for files of several parts:
	// the backend's smallest for all parts but the last (5 MiB for S3).
	// 0 means 4096 bytes.
	PartSize int64
	// Offline, when set, makes share s (made by New) unreachable until the
	// returned function is called, which makes it reachable again. Without
	// it the Offline subtest is skipped.
	Offline func(t *testing.T, s library.Share) (online func())
	// Locks says that the backend refuses a second Create of an upload
	// that is open (ErrBusy), as a DirShare does.
	Locks bool
}

func (s *Setup) partSize() int64 {
	if s.PartSize > 0 {
		return s.PartSize
	}
	return 4096
}

// Run runs the suite against the shares setup makes.
func Run(t *testing.T, setup *Setup) {
	t.Helper()
	require.NotNil(t, setup.New, "Setup.New")
	tests := []struct {
		name string
		run  func(t *testing.T, s *Setup)
	}{
		{"Empty", testEmpty},
		{"WriteRead", testWriteRead},
		{"Names", testNames},
		{"InvalidNames", testInvalidNames},
		{"Hidden", testHidden},
		{"InvisibleUntilCommit", testInvisibleUntilCommit},
		{"PartsAnyOrder", testPartsAnyOrder},
		{"BadParts", testBadParts},
		{"Resume", testResume},
		{"CommitMissingParts", testCommitMissingParts},
		{"CommitNeverReplaces", testCommitNeverReplaces},
		{"Abort", testAbort},
		{"Rename", testRename},
		{"Remove", testRemove},
		{"ReadAt", testReadAt},
		{"ZeroSize", testZeroSize},
		{"Cancelled", testCancelled},
		{"Offline", testOffline},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, setup) })
	}
}

// requireErr fails unless err is a *library.ShareError matching target.
func requireErr(t *testing.T, err, target error, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	require.Error(t, err, msg)
	requireShareError(t, err, "%s", msg)
	require.ErrorIs(t, err, target, msg)
}

// requireShareError fails unless err is a *library.ShareError.
func requireShareError(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	var se *library.ShareError
	require.Truef(t, errors.As(err, &se), "%s: got %T (%v), want a *library.ShareError", fmt.Sprintf(format, args...), err, err)
}

// content returns n bytes that differ from one seed to the next.
func content(seed uint64, n int64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// partSum is the sum the suite records for part n of data.
func partSum(data []byte, n int) []byte {
	return []byte(fmt.Sprintf("sum-%d-%x", n, len(data)))
}

// slicePart returns part n of data in parts of ps bytes.
func slicePart(data []byte, ps int64, n int) []byte {
	off := int64(n) * ps
	return data[off:min(off+ps, int64(len(data)))]
}

// put writes data to name through an upload in parts of ps bytes and
// commits it.
func put(t *testing.T, sh library.Share, name string, data []byte, ps int64) {
	t.Helper()
	ctx := t.Context()
	u, err := sh.Create(ctx, name, int64(len(data)), ps)
	require.NoError(t, err, "Create %q", name)
	for n := range library.NumChunks(int64(len(data)), ps) {
		require.NoError(t, u.WritePart(ctx, n, slicePart(data, ps, n), partSum(data, n)), "WritePart %q %d", name, n)
	}
	require.NoError(t, u.Commit(ctx), "Commit %q", name)
}

// read returns the whole content of name, checking Stat and Size agree.
func read(t *testing.T, sh library.Share, name string) []byte {
	t.Helper()
	ctx := t.Context()
	fi, err := sh.Stat(ctx, name)
	require.NoError(t, err, "Stat %q", name)
	require.Equal(t, name, fi.Name, "Stat(%q).Name", name)
	f, err := sh.Open(ctx, name)
	require.NoError(t, err, "Open %q", name)
	defer f.Close()
	require.Equal(t, fi.Size, f.Size(), "Open(%q).Size(), want Stat's size", name)
	b := make([]byte, f.Size())
	n, err := f.ReadAt(b, 0)
	if err != nil && !(err == io.EOF && n == len(b)) {
		require.NoError(t, err, "ReadAt %q", name)
	}
	require.Equal(t, len(b), n, "ReadAt %q", name)
	return b
}

// requireContent fails unless name holds exactly want.
func requireContent(t *testing.T, sh library.Share, name string, want []byte) {
	t.Helper()
	got := read(t, sh, name)
	if !bytes.Equal(got, want) {
		t.Fatalf("content of %q: got %d bytes (%.16x...), want %d bytes (%.16x...)", name, len(got), got, len(want), want)
	}
}

// requireGone fails unless Stat and Open of name fail with ErrNotFound.
func requireGone(t *testing.T, sh library.Share, name string) {
	t.Helper()
	_, err := sh.Stat(t.Context(), name)
	requireErr(t, err, library.ErrNotFound, "Stat %q", name)
	f, err := sh.Open(t.Context(), name)
	if err == nil {
		f.Close()
	}
	requireErr(t, err, library.ErrNotFound, "Open %q", name)
}

// list returns the names and sizes List yields, failing on an error.
func list(t *testing.T, sh library.Share) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for fi, err := range sh.List(t.Context()) {
		require.NoError(t, err, "List")
		_, dup := out[fi.Name]
		require.False(t, dup, "List yielded %q twice", fi.Name)
		out[fi.Name] = fi.Size
		assert.NoError(t, library.CheckName(fi.Name), "List yielded a name CheckName refuses")
	}
	return out
}

// requireList fails unless List yields exactly the names of want, with
// their sizes.
func requireList(t *testing.T, sh library.Share, want map[string]int64) {
	t.Helper()
	got := list(t, sh)
	if !maps.Equal(got, want) {
		t.Fatalf("List: got %v, want %v", sortedKeys(got), sortedKeys(want))
	}
}

func sortedKeys(m map[string]int64) []string {
	var ks []string
	for k, v := range m {
		ks = append(ks, fmt.Sprintf("%s(%d)", k, v))
	}
	slices.Sort(ks)
	return ks
}

// parallel runs f(i) for i in [0, n) in goroutines and waits for them.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

// cancelled returns a context that is already cancelled.
func cancelled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}
