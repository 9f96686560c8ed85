package sharetest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/library"
)

// wantParts returns the Parts an upload of data in parts of ps bytes
// reports once parts ns are written with partSum.
func wantParts(data []byte, ps int64, ns ...int) map[int]library.Part {
	m := map[int]library.Part{}
	for _, n := range ns {
		m[n] = library.Part{Size: int64(len(slicePart(data, ps, n))), Sum: partSum(data, n)}
	}
	return m
}

func requireParts(t *testing.T, u library.Upload, want map[int]library.Part, format string, args ...any) {
	t.Helper()
	got, err := u.Parts(t.Context())
	require.NoError(t, err, "Parts")
	if len(got) == 0 && len(want) == 0 {
		return
	}
	require.Equal(t, want, got, fmt.Sprintf(format, args...))
}

func testInvisibleUntilCommit(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	ps := s.partSize()
	data := content(20, 2*ps+5)
	u, err := sh.Create(ctx, "sub/new.vhd", int64(len(data)), ps)
	require.NoError(t, err)
	requireGone(t, sh, "sub/new.vhd")
	for n := range 3 {
		require.NoError(t, u.WritePart(ctx, n, slicePart(data, ps, n), partSum(data, n)))
		requireGone(t, sh, "sub/new.vhd")
		requireList(t, sh, map[string]int64{})
	}
	requireParts(t, u, wantParts(data, ps, 0, 1, 2), "Parts before Commit")
	require.NoError(t, u.Commit(ctx))
	requireContent(t, sh, "sub/new.vhd", data)
	requireList(t, sh, map[string]int64{"sub/new.vhd": int64(len(data))})
	// The upload is spent: it resumes nothing afterwards.
	u2, err := sh.Create(ctx, "sub/new.vhd", int64(len(data)), ps)
	require.NoError(t, err)
	requireParts(t, u2, nil, "Parts of a new upload after a Commit")
	require.NoError(t, u2.Abort(ctx))
}

func testPartsAnyOrder(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	ps := s.partSize()
	data := content(21, 4*ps+ps/2)
	nparts := library.NumChunks(int64(len(data)), ps)
	u, err := sh.Create(ctx, "parallel", int64(len(data)), ps)
	require.NoError(t, err)
	// The last part first, then the others at once.
	require.NoError(t, u.WritePart(ctx, nparts-1, slicePart(data, ps, nparts-1), partSum(data, nparts-1)))
	parallel(nparts-1, func(i int) {
		n := nparts - 2 - i
		if err := u.WritePart(ctx, n, slicePart(data, ps, n), partSum(data, n)); err != nil {
			t.Errorf("WritePart %d: %v", n, err)
		}
	})
	require.False(t, t.Failed())
	all := make([]int, nparts)
	for i := range all {
		all[i] = i
	}
	requireParts(t, u, wantParts(data, ps, all...), "Parts")

	// Writing a part again replaces it, bytes and sum.
	wrong := content(22, ps)
	require.NoError(t, u.WritePart(ctx, 1, wrong, []byte("wrong")))
	got, err := u.Parts(ctx)
	require.NoError(t, err)
	require.Equal(t, []byte("wrong"), got[1].Sum)
	require.NoError(t, u.WritePart(ctx, 1, slicePart(data, ps, 1), partSum(data, 1)))
	requireParts(t, u, wantParts(data, ps, all...), "Parts")
	require.NoError(t, u.Commit(ctx))
	requireContent(t, sh, "parallel", data)
}

func testBadParts(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	ps := s.partSize()
	data := content(23, ps+10)
	_, err := sh.Create(ctx, "neg", -1, ps)
	requireShareError(t, err, "Create with a negative size")
	_, err = sh.Create(ctx, "zero-part", 10, 0)
	requireShareError(t, err, "Create with a part size of 0")

	u, err := sh.Create(ctx, "f", int64(len(data)), ps)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		n    int
		p    []byte
	}{
		{"negative part", -1, data[:ps]},
		{"part past the end", 2, data[:10]},
		{"short part", 0, data[:ps-1]},
		{"long last part", 1, data[ps-1:]},
		{"short last part", 1, data[ps+1:]},
	} {
		err := u.WritePart(ctx, tc.n, tc.p, nil)
		requireShareError(t, err, "%s", tc.name)
	}
	requireParts(t, u, nil, "Parts after refused writes")
	require.NoError(t, u.WritePart(ctx, 0, slicePart(data, ps, 0), partSum(data, 0)))
	require.NoError(t, u.WritePart(ctx, 1, slicePart(data, ps, 1), partSum(data, 1)))
	require.NoError(t, u.Commit(ctx))
	requireContent(t, sh, "f", data)
}

func testResume(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	ps := s.partSize()
	data := content(24, 3*ps+100)
	size := int64(len(data))

	u, err := sh.Create(ctx, "resumed.vhd", size, ps)
	require.NoError(t, err)
	require.NoError(t, u.WritePart(ctx, 0, slicePart(data, ps, 0), partSum(data, 0)))
	require.NoError(t, u.WritePart(ctx, 2, slicePart(data, ps, 2), partSum(data, 2)))
	if s.Locks {
		_, err := sh.Create(ctx, "resumed.vhd", size, ps)
		requireErr(t, err, library.ErrBusy, "Create of an upload that is open")
	}
	// The caller lets u go (a cancelled transfer) and starts again.
	require.NoError(t, u.Close())
	require.Error(t, u.WritePart(ctx, 1, slicePart(data, ps, 1), partSum(data, 1)), "WritePart after Close")

	u2, err := sh.Create(ctx, "resumed.vhd", size, ps)
	require.NoError(t, err)
	requireParts(t, u2, wantParts(data, ps, 0, 2), "Parts after a resume")
	requireGone(t, sh, "resumed.vhd")

	// Another size, or another part size, is another upload.
	other, err := sh.Create(ctx, "resumed.vhd", size+1, ps)
	require.NoError(t, err)
	requireParts(t, other, nil, "Parts of an upload with another size")
	require.NoError(t, other.Abort(ctx))
	if ps2 := ps * 2; library.NumChunks(size, ps2) > 1 {
		other, err := sh.Create(ctx, "resumed.vhd", size, ps2)
		require.NoError(t, err)
		requireParts(t, other, nil, "Parts of an upload with another part size")
		require.NoError(t, other.Abort(ctx))
	}

	// Aborting the others left the first alone.
	require.NoError(t, u2.Close())
	u3, err := sh.Create(ctx, "resumed.vhd", size, ps)
	require.NoError(t, err)
	requireParts(t, u3, wantParts(data, ps, 0, 2), "Parts after a second resume")
	require.NoError(t, u3.WritePart(ctx, 1, slicePart(data, ps, 1), partSum(data, 1)))
	require.NoError(t, u3.WritePart(ctx, 3, slicePart(data, ps, 3), partSum(data, 3)))
	require.NoError(t, u3.Commit(ctx))
	requireContent(t, sh, "resumed.vhd", data)
	requireList(t, sh, map[string]int64{"resumed.vhd": size})
}

func testCommitMissingParts(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	ps := s.partSize()
	data := content(25, 2*ps+1)
	u, err := sh.Create(ctx, "partial", int64(len(data)), ps)
	require.NoError(t, err)
	requireShareError(t, u.Commit(ctx), "Commit with no parts")
	require.NoError(t, u.WritePart(ctx, 0, slicePart(data, ps, 0), partSum(data, 0)))
	require.NoError(t, u.WritePart(ctx, 2, slicePart(data, ps, 2), partSum(data, 2)))
	requireShareError(t, u.Commit(ctx), "Commit with part 1 missing")
	requireGone(t, sh, "partial")
	requireList(t, sh, map[string]int64{})
	requireParts(t, u, wantParts(data, ps, 0, 2), "Parts after a refused Commit")

	require.NoError(t, u.WritePart(ctx, 1, slicePart(data, ps, 1), partSum(data, 1)))
	require.NoError(t, u.Commit(ctx))
	requireContent(t, sh, "partial", data)
}

func testCommitNeverReplaces(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	ps := s.partSize()
	old := content(26, 50)
	put(t, sh, "taken", old, ps)

	data := content(27, ps+20)
	u, err := sh.Create(ctx, "taken", int64(len(data)), ps)
	require.NoError(t, err)
	require.NoError(t, u.WritePart(ctx, 1, slicePart(data, ps, 1), partSum(data, 1)))
	require.NoError(t, u.WritePart(ctx, 0, slicePart(data, ps, 0), partSum(data, 0)))
	requireErr(t, u.Commit(ctx), library.ErrExist, "Commit onto an existing file")
	requireContent(t, sh, "taken", old)
	requireParts(t, u, wantParts(data, ps, 0, 1), "Parts after Commit failed with ErrExist")

	// The upload survives a resume, too.
	require.NoError(t, u.Close())
	u2, err := sh.Create(ctx, "taken", int64(len(data)), ps)
	require.NoError(t, err)
	requireParts(t, u2, wantParts(data, ps, 0, 1), "Parts of a resume after Commit failed with ErrExist")

	require.NoError(t, sh.Remove(ctx, "taken"))
	require.NoError(t, u2.Commit(ctx))
	requireContent(t, sh, "taken", data)
	requireList(t, sh, map[string]int64{"taken": int64(len(data))})

	// A rename onto the name is refused as well.
	put(t, sh, "other", old, ps)
	requireErr(t, sh.Rename(ctx, "other", "taken"), library.ErrExist, "Rename onto a committed file")
	requireContent(t, sh, "taken", data)
}

func testAbort(t *testing.T, s *Setup) {
	sh := s.New(t)
	ctx := t.Context()
	ps := s.partSize()
	data := content(28, 2*ps+3)
	u, err := sh.Create(ctx, "dir/aborted", int64(len(data)), ps)
	require.NoError(t, err)
	for n := range 3 {
		require.NoError(t, u.WritePart(ctx, n, slicePart(data, ps, n), partSum(data, n)))
	}
	require.NoError(t, u.Abort(ctx))
	requireGone(t, sh, "dir/aborted")
	requireList(t, sh, map[string]int64{})
	requireShareError(t, u.Commit(ctx), "Commit after Abort")
	requireGone(t, sh, "dir/aborted")

	// Nothing is resumed after an Abort.
	u2, err := sh.Create(ctx, "dir/aborted", int64(len(data)), ps)
	require.NoError(t, err)
	requireParts(t, u2, nil, "Parts after Abort and Create")
	require.NoError(t, u2.Abort(ctx))
	requireList(t, sh, map[string]int64{})
}
