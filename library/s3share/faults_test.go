package s3share_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/internal/testenv"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/library/s3share"
)

// put writes data to name in parts of ps and commits it.
func put(t *testing.T, s library.Share, name string, data []byte, ps int64) {
	t.Helper()
	ctx := t.Context()
	u, err := s.Create(ctx, name, int64(len(data)), ps)
	require.NoError(t, err)
	for n := range library.NumChunks(int64(len(data)), ps) {
		off := int64(n) * ps
		require.NoError(t, u.WritePart(ctx, n, data[off:min(off+ps, int64(len(data)))], []byte{byte(n)}))
	}
	require.NoError(t, u.Commit(ctx))
}

func readAll(t *testing.T, s library.Share, name string) []byte {
	t.Helper()
	f, err := s.Open(t.Context(), name)
	require.NoError(t, err)
	defer f.Close()
	b := make([]byte, f.Size())
	_, err = f.ReadAt(b, 0)
	require.NoError(t, err)
	return b
}

func pattern(n int64, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i/4096) ^ seed ^ byte(i)
	}
	return b
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestUnreachable: a store nobody answers for is ErrOffline, within the
// bound of ctx even when the share would retry for much longer.
func TestUnreachable(t *testing.T) {
	addr := freeAddr(t)
	for _, tc := range []struct {
		name    string
		retry   time.Duration
		timeout time.Duration
	}{
		{"retries end", 200 * time.Millisecond, time.Hour},
		{"ctx ends", time.Hour, 500 * time.Millisecond},
		{"no retries", -1, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := s3share.New(s3share.Config{Name: "gone", Endpoint: addr, Bucket: "bucket", AccessKey: "k", SecretKey: "s", RetryTimeout: tc.retry})
			require.NoError(t, err)
			ops := map[string]func(ctx context.Context) error{
				"Stat": func(ctx context.Context) error { _, err := s.Stat(ctx, "x"); return err },
				"Open": func(ctx context.Context) error { _, err := s.Open(ctx, "x"); return err },
				"List": func(ctx context.Context) error {
					for _, err := range s.List(ctx) {
						return err
					}
					return nil
				},
				"Create": func(ctx context.Context) error { _, err := s.Create(ctx, "x", 1, 1); return err },
				"Rename": func(ctx context.Context) error { return s.Rename(ctx, "x", "y") },
				"Remove": func(ctx context.Context) error { return s.Remove(ctx, "x") },
			}
			for name, op := range ops {
				ctx, cancel := context.WithTimeout(t.Context(), tc.timeout)
				err := op(ctx)
				cancel()
				requireErr(t, err, library.ErrOffline, name)
			}
		})
	}
}

func TestWrongCredentials(t *testing.T) {
	sv := testServer(t)
	good := sv.newShare(t, sv.config(sv.buckets[1], ""))
	put(t, good, "f", []byte("hello"), 5)
	for _, tc := range []struct{ name, access, secret string }{
		{"wrong secret", sv.access, sv.secret + "x"},
		{"unknown user", "nobody-" + sv.access, sv.secret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := sv.config(sv.buckets[1], good.Prefix())
			cfg.AccessKey, cfg.SecretKey = tc.access, tc.secret
			s, err := s3share.New(cfg)
			require.NoError(t, err)
			ctx := t.Context()
			_, err = s.Stat(ctx, "f")
			requireErr(t, err, library.ErrPermission, "Stat")
			_, err = s.Open(ctx, "f")
			requireErr(t, err, library.ErrPermission, "Open")
			for _, err := range s.List(ctx) {
				requireErr(t, err, library.ErrPermission, "List")
				break
			}
			_, err = s.Create(ctx, "g", 5, 5)
			requireErr(t, err, library.ErrPermission, "Create")
			requireErr(t, s.Remove(ctx, "f"), library.ErrPermission, "Remove")
			// The minio-go error stays reachable.
			var er minio.ErrorResponse
			_, err = s.Stat(ctx, "f")
			require.True(t, errors.As(err, &er), "errors.As(%v, minio.ErrorResponse)", err)
		})
	}
	require.Equal(t, []byte("hello"), readAll(t, good, "f"))
}

func TestPartSizeLimits(t *testing.T) {
	sv := testServer(t)
	s := sv.newShare(t, sv.config(sv.buckets[0], ""))
	ctx := t.Context()
	_, err := s.Create(ctx, "small-parts", 3*4096, 4096)
	require.Error(t, err)
	require.Contains(t, err.Error(), "5 MiB")
	// One part may be of any size.
	put(t, s, "one-part", []byte("tiny"), 4096)
	require.Equal(t, []byte("tiny"), readAll(t, s, "one-part"))
	_, err = s.Create(ctx, "too-many", 10001*s3share.MinPartSize, s3share.MinPartSize)
	require.Error(t, err)
}

// TestCrashPoints leaves an upload in the states a crash between two of
// its requests would, and checks what a resume reports.
func TestCrashPoints(t *testing.T) {
	sv := testServer(t)
	s := sv.newShare(t, sv.config(sv.buckets[0], ""))
	c := s3share.Client(s)
	ctx := t.Context()
	ps := int64(s3share.MinPartSize)
	data := pattern(3*ps, 1)
	part := func(n int) []byte { return data[int64(n)*ps : int64(n+1)*ps] }
	key := s.Prefix() + "crash.vhd"

	// A multipart upload started by a Create that died before it recorded
	// what the upload is for: ignored, not resumed.
	orphan, err := c.NewMultipartUpload(ctx, s.Bucket(), key, minio.PutObjectOptions{})
	require.NoError(t, err)
	_, err = c.PutObjectPart(ctx, s.Bucket(), key, orphan, 1, bytes.NewReader(part(0)), ps, minio.PutObjectPartOptions{})
	require.NoError(t, err)
	u, err := s.Create(ctx, "crash.vhd", int64(len(data)), ps)
	require.NoError(t, err)
	parts, err := u.Parts(ctx)
	require.NoError(t, err)
	require.Empty(t, parts, "an upload without its info marker was resumed")

	require.NoError(t, u.WritePart(ctx, 0, part(0), []byte("s0")))
	require.NoError(t, u.WritePart(ctx, 1, part(1), []byte("s1")))
	require.NoError(t, u.WritePart(ctx, 2, part(2), []byte("s2")))
	uploadID := findUploadID(t, s, key, orphan)
	markers := func() []string {
		var ks []string
		for oi := range c.Client.ListObjects(ctx, s.Bucket(), minio.ListObjectsOptions{Prefix: s.Prefix() + ".vmmkit-uploads/" + uploadID + "/p", Recursive: true}) {
			require.NoError(t, oi.Err)
			ks = append(ks, oi.Key)
		}
		return ks
	}
	require.Len(t, markers(), 3)

	// Part 1 stored but its marker lost (a crash between the two requests).
	for _, k := range markers() {
		if strings.Contains(k, "/p1.") {
			require.NoError(t, c.RemoveObject(ctx, s.Bucket(), k, minio.RemoveObjectOptions{}))
		}
	}
	// Part 2 written again with other bytes, its new marker never written:
	// the old marker names the old ETag and must not be trusted.
	_, err = c.PutObjectPart(ctx, s.Bucket(), key, uploadID, 3, bytes.NewReader(pattern(ps, 9)), ps, minio.PutObjectPartOptions{})
	require.NoError(t, err)

	u2, err := s.Create(ctx, "crash.vhd", int64(len(data)), ps)
	require.NoError(t, err)
	parts, err = u2.Parts(ctx)
	require.NoError(t, err)
	require.Equal(t, map[int]library.Part{0: {Size: ps, Sum: []byte("s0")}}, parts)

	require.NoError(t, u2.WritePart(ctx, 1, part(1), []byte("s1")))
	require.NoError(t, u2.WritePart(ctx, 2, part(2), []byte("s2")))
	require.NoError(t, u2.Commit(ctx))
	require.True(t, bytes.Equal(data, readAll(t, s, "crash.vhd")))
	// The markers went with the upload.
	for oi := range c.Client.ListObjects(ctx, s.Bucket(), minio.ListObjectsOptions{Prefix: s.Prefix() + ".vmmkit-uploads/" + uploadID, Recursive: true}) {
		t.Errorf("left behind: %s", oi.Key)
	}
}

func findUploadID(t *testing.T, s *s3share.Share, key, not string) string {
	t.Helper()
	for up := range s3share.Client(s).ListIncompleteUploads(t.Context(), s.Bucket(), key, true) {
		require.NoError(t, up.Err)
		if up.Key == key && up.UploadID != not {
			return up.UploadID
		}
	}
	t.Fatalf("no upload of %s", key)
	return ""
}

// TestCommitRace commits several complete uploads of one name at once:
// exactly one wins, the others fail with ErrExist and keep their uploads.
func TestCommitRace(t *testing.T) {
	sv := testServer(t)
	s := sv.newShare(t, sv.config(sv.buckets[2], ""))
	ctx := t.Context()
	const n = 6
	ups := make([]library.Upload, n)
	for i := range ups {
		// Different sizes make different uploads of the same name.
		data := pattern(int64(100+i), byte(i))
		u, err := s.Create(ctx, "contested", int64(len(data)), 4096)
		require.NoError(t, err)
		require.NoError(t, u.WritePart(ctx, 0, data, nil))
		ups[i] = u
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, u := range ups {
		wg.Go(func() { errs[i] = u.Commit(ctx) })
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		if err == nil {
			require.Equal(t, -1, won, "two Commits of one name succeeded: %d and %d", won, i)
			won = i
			continue
		}
		requireErr(t, err, library.ErrExist, fmt.Sprintf("Commit %d", i))
	}
	require.NotEqual(t, -1, won, "no Commit succeeded")
	require.Equal(t, pattern(int64(100+won), byte(won)), readAll(t, s, "contested"))
	for i, u := range ups {
		if i != won {
			require.NoError(t, u.Abort(ctx))
		}
	}
}

// minioServer is a MinIO of the test's own, to stop and start.
type minioServer struct {
	bin, dir, addr string
	cmd            *exec.Cmd
}

func (m *minioServer) start(t *testing.T, sv server) {
	t.Helper()
	m.cmd = exec.Command(m.bin, "server", "--quiet", "--address", m.addr, m.dir)
	m.cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+sv.access, "MINIO_ROOT_PASSWORD="+sv.secret,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	log, err := os.OpenFile(filepath.Join(filepath.Dir(m.dir), "minio.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	defer log.Close()
	m.cmd.Stdout, m.cmd.Stderr = log, log
	require.NoError(t, m.cmd.Start())
	c, err := minio.New(m.addr, &minio.Options{Creds: credentials.NewStaticV4(sv.access, sv.secret, ""), MaxRetries: 1})
	require.NoError(t, err)
	// Poll until it answers; the deadline only keeps a broken server from
	// hanging the test.
	deadline := time.Now().Add(time.Minute)
	for {
		// Ready means it serves signed requests, which comes a little
		// after /minio/health/ready.
		_, err := c.ListBuckets(t.Context())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(filepath.Dir(m.dir), "minio.log"))
			t.Fatalf("minio did not answer on %s: %v\n%s", m.addr, err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *minioServer) kill() {
	if m.cmd != nil && m.cmd.Process != nil {
		m.cmd.Process.Signal(syscall.SIGCONT)
		m.cmd.Process.Kill()
		m.cmd.Wait()
		m.cmd = nil
	}
}

// TestServerStopped runs a MinIO of its own, freezes it (SIGSTOP) and
// kills it in the middle of an upload and a read: every operation fails
// with ErrOffline within its ctx, and after a restart the upload resumes
// with the parts it had.
func TestServerStopped(t *testing.T) {
	sv := testServer(t)
	bin := testenv.Var(t, "VMM_TEST_S3_MINIO")
	dir := t.TempDir()
	m := &minioServer{bin: bin, dir: filepath.Join(dir, "data"), addr: freeAddr(t)}
	m.start(t, sv)
	defer m.kill()

	cfg := sv.config("stopped", "lib")
	cfg.Endpoint = m.addr
	// A File's reads have no ctx: what bounds a read from a server that
	// never answers is the transport's wait for response headers.
	tr, err := minio.DefaultTransport(false)
	require.NoError(t, err)
	tr.ResponseHeaderTimeout = 2 * time.Second
	cfg.Transport = tr
	s, err := s3share.New(cfg)
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, s3share.Client(s).MakeBucket(ctx, "stopped", minio.MakeBucketOptions{}))

	ps := int64(s3share.MinPartSize)
	keep := pattern(ps+10, 3)
	put(t, s, "keep", keep, ps)
	data := pattern(3*ps-5, 4)
	part := func(n int) []byte { return data[int64(n)*ps : min(int64(n+1)*ps, int64(len(data)))] }
	u, err := s.Create(ctx, "big.vhdx", int64(len(data)), ps)
	require.NoError(t, err)
	require.NoError(t, u.WritePart(ctx, 0, part(0), []byte("zero")))
	require.NoError(t, u.WritePart(ctx, 2, part(2), []byte("two")))
	f, err := s.Open(ctx, "keep")
	require.NoError(t, err)
	defer f.Close()

	offline := func(what string) {
		t.Helper()
		bounded, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		requireErr(t, u.WritePart(bounded, 1, part(1), []byte("one")), library.ErrOffline, what+": WritePart")
		_, err := s.Stat(bounded, "keep")
		requireErr(t, err, library.ErrOffline, what+": Stat")
		requireErr(t, u.Commit(bounded), library.ErrOffline, what+": Commit")
		for _, err := range s.List(bounded) {
			requireErr(t, err, library.ErrOffline, what+": List")
			break
		}
		_, err = f.ReadAt(make([]byte, 10), 0)
		requireErr(t, err, library.ErrOffline, what+": ReadAt")
	}

	// Frozen: connections are accepted by the kernel, nothing answers.
	require.NoError(t, m.cmd.Process.Signal(syscall.SIGSTOP))
	offline("frozen")
	// Killed: connections are refused.
	m.kill()
	offline("killed")

	// Back, on the same data: the dropped upload resumes.
	m.start(t, sv)
	require.Equal(t, keep, readAll(t, s, "keep"))
	u2, err := s.Create(ctx, "big.vhdx", int64(len(data)), ps)
	require.NoError(t, err)
	parts, err := u2.Parts(ctx)
	require.NoError(t, err)
	require.Equal(t, map[int]library.Part{
		0: {Size: ps, Sum: []byte("zero")},
		2: {Size: ps - 5, Sum: []byte("two")},
	}, parts)
	require.NoError(t, u2.WritePart(ctx, 1, part(1), []byte("one")))
	require.NoError(t, u2.Commit(ctx))
	require.True(t, bytes.Equal(data, readAll(t, s, "big.vhdx")))
	// The File opened before the outage reads again.
	p := make([]byte, 10)
	_, err = f.ReadAt(p, 0)
	require.NoError(t, err)
	require.Equal(t, keep[:10], p)
}

// TestAbortLeavesNothing: after Abort (and after Commit) no upload and no
// marker of the share is left in the bucket.
func TestAbortLeavesNothing(t *testing.T) {
	sv := testServer(t)
	s := sv.newShare(t, sv.config(sv.buckets[0], ""))
	c := s3share.Client(s)
	ctx := t.Context()
	ps := int64(s3share.MinPartSize)
	data := pattern(2*ps, 5)
	for _, commit := range []bool{false, true} {
		u, err := s.Create(ctx, "f", int64(len(data)), ps)
		require.NoError(t, err)
		require.NoError(t, u.WritePart(ctx, 0, data[:ps], []byte("a")))
		require.NoError(t, u.WritePart(ctx, 1, data[ps:], []byte("b")))
		if commit {
			require.NoError(t, u.Commit(ctx))
		} else {
			require.NoError(t, u.Abort(ctx))
		}
		for up := range c.ListIncompleteUploads(ctx, s.Bucket(), s.Prefix(), true) {
			t.Errorf("commit=%v: upload left: %s %s (%v)", commit, up.Key, up.UploadID, up.Err)
		}
		var keys []string
		for oi := range c.Client.ListObjects(ctx, s.Bucket(), minio.ListObjectsOptions{Prefix: s.Prefix(), Recursive: true}) {
			require.NoError(t, oi.Err)
			keys = append(keys, strings.TrimPrefix(oi.Key, s.Prefix()))
		}
		if commit {
			require.Equal(t, []string{"f"}, keys)
		} else {
			require.Empty(t, keys)
		}
	}
}
