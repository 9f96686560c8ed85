package sharetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/library"
)

func testCancelled(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	ps := s.partSize()
	keep := content(30, 40)
	put(t, sh, "keep", keep, ps)
	data := content(31, ps+7)
	u, err := sh.Create(ctx, "new", int64(len(data)), ps)
	require.NoError(t, err)
	require.NoError(t, u.WritePart(ctx, 0, slicePart(data, ps, 0), partSum(data, 0)))

	cctx := cancelled(t)
	canceled := func(err error, what string) {
		t.Helper()
		requireErr(t, err, context.Canceled, "%s with a cancelled ctx", what)
	}
	var listErr error
	for _, err := range sh.List(cctx) {
		if err != nil {
			listErr = err
			break
		}
	}
	canceled(listErr, "List")
	_, err = sh.Stat(cctx, "keep")
	canceled(err, "Stat")
	f, err := sh.Open(cctx, "keep")
	if err == nil {
		f.Close()
	}
	canceled(err, "Open")
	_, err = sh.Create(cctx, "other", 10, ps)
	canceled(err, "Create")
	canceled(sh.Rename(cctx, "keep", "moved"), "Rename")
	canceled(sh.Remove(cctx, "keep"), "Remove")
	_, err = u.Parts(cctx)
	canceled(err, "Parts")
	canceled(u.WritePart(cctx, 1, slicePart(data, ps, 1), partSum(data, 1)), "WritePart")
	requireParts(t, u, wantParts(data, ps, 0), "Parts after WritePart with a cancelled ctx")
	require.NoError(t, u.WritePart(ctx, 1, slicePart(data, ps, 1), partSum(data, 1)))
	canceled(u.Commit(cctx), "Commit")
	requireGone(t, sh, "new")
	canceled(u.Abort(cctx), "Abort")
	requireParts(t, u, wantParts(data, ps, 0, 1), "Parts after Abort with a cancelled ctx")

	// Nothing changed.
	requireList(t, sh, map[string]int64{"keep": 40})
	requireContent(t, sh, "keep", keep)
	requireGone(t, sh, "moved")
	requireGone(t, sh, "other")
	other, err := sh.Create(ctx, "other", 10, ps)
	require.NoError(t, err)
	requireParts(t, other, nil, "Parts of an upload whose Create was cancelled")
	require.NoError(t, other.Abort(ctx))

	require.NoError(t, u.Commit(ctx))
	requireContent(t, sh, "new", data)
}

func testOffline(t *testing.T, s *Setup) {
	if s.Offline == nil {
		t.Skip("Setup.Offline not set")
	}
	sh := s.New(t)
	ctx := t.Context()
	ps := s.partSize()
	keep := content(40, 40)
	put(t, sh, "keep", keep, ps)
	data := content(41, ps+9)
	u, err := sh.Create(ctx, "pending", int64(len(data)), ps)
	require.NoError(t, err)
	require.NoError(t, u.WritePart(ctx, 0, slicePart(data, ps, 0), partSum(data, 0)))

	online := s.Offline(t, sh)
	restored := false
	defer func() {
		if !restored {
			online()
		}
	}()
	// The share's retries are bound by ctx; a generous bound keeps a
	// backend that never gives up from hanging the suite.
	octx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	offline := func(err error, what string) {
		t.Helper()
		requireErr(t, err, library.ErrOffline, "%s while the share is offline", what)
	}
	var listErr error
	for _, err := range sh.List(octx) {
		if err != nil {
			listErr = err
			break
		}
	}
	offline(listErr, "List")
	_, err = sh.Stat(octx, "keep")
	offline(err, "Stat")
	f, err := sh.Open(octx, "keep")
	if err == nil {
		f.Close()
	}
	offline(err, "Open")
	_, err = sh.Create(octx, "other", 10, ps)
	offline(err, "Create")
	offline(sh.Rename(octx, "keep", "moved"), "Rename")
	offline(sh.Remove(octx, "keep"), "Remove")
	offline(u.WritePart(octx, 1, slicePart(data, ps, 1), partSum(data, 1)), "WritePart")
	offline(u.Commit(octx), "Commit")

	require.NoError(t, u.Close())
	online()
	restored = true
	requireList(t, sh, map[string]int64{"keep": 40})
	requireContent(t, sh, "keep", keep)
	u2, err := sh.Create(ctx, "pending", int64(len(data)), ps)
	require.NoError(t, err)
	requireParts(t, u2, wantParts(data, ps, 0), "Parts after the share came back")
	require.NoError(t, u2.WritePart(ctx, 1, slicePart(data, ps, 1), partSum(data, 1)))
	require.NoError(t, u2.Commit(ctx))
	requireContent(t, sh, "pending", data)
}
