package s3share

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/require"

	"github.com/vmmkit/vmmkit/library"
)

// refused is what minio-go returns when nothing listens.
var refused = &url.Error{Op: "Get", URL: "http://127.0.0.1:1/b", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		kind      error
		transient bool
	}{
		{"no such key", minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}, library.ErrNotFound, false},
		{"no such upload", minio.ErrorResponse{Code: "NoSuchUpload", StatusCode: 404}, library.ErrNotFound, false},
		{"no such bucket", minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}, library.ErrNotFound, false},
		{"HEAD 404", minio.ErrorResponse{StatusCode: 404}, library.ErrNotFound, false},
		{"access denied", minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, library.ErrPermission, false},
		{"bad key", minio.ErrorResponse{Code: "InvalidAccessKeyId", StatusCode: 403}, library.ErrPermission, false},
		{"bad signature", minio.ErrorResponse{Code: "SignatureDoesNotMatch", StatusCode: 403}, library.ErrPermission, false},
		{"too large", minio.ErrorResponse{Code: "EntityTooLarge", StatusCode: 400}, library.ErrNoSpace, false},
		{"disk full", minio.ErrorResponse{Code: "XMinioStorageFull", StatusCode: 507}, library.ErrNoSpace, false},
		{"quota", minio.ErrorResponse{Code: "XMinioAdminBucketQuotaExceeded", StatusCode: 400}, library.ErrNoSpace, false},
		{"exists", minio.ErrorResponse{Code: "PreconditionFailed", StatusCode: 412}, library.ErrExist, false},
		{"slow down", minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}, library.ErrOffline, true},
		{"starting", minio.ErrorResponse{Code: "XMinioServerNotInitialized", StatusCode: 503}, library.ErrOffline, true},
		{"internal", minio.ErrorResponse{Code: "InternalError", StatusCode: 500}, nil, true},
		{"bad request", minio.ErrorResponse{Code: "InvalidArgument", StatusCode: 400}, nil, false},
		{"refused", refused, library.ErrOffline, true},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), library.ErrOffline, true},
		{"refused at the deadline", errors.Join(refused, context.DeadlineExceeded), library.ErrOffline, true},
		{"cancelled", &url.Error{Op: "Get", URL: "http://x/", Err: context.Canceled}, nil, false},
		{"other", errors.New("bad size"), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kind, transient := classify(tc.err)
			if kind != tc.kind || transient != tc.transient {
				t.Errorf("classify(%v) = %v, %v; want %v, %v", tc.err, kind, transient, tc.kind, tc.transient)
			}
		})
	}
}

func TestRetry(t *testing.T) {
	busy := minio.ErrorResponse{Code: "SlowDown", StatusCode: 503}
	t.Run("transient then success", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := &Share{retryTimeout: time.Minute}
			calls := 0
			err := s.retry(t.Context(), func() error {
				if calls++; calls < 5 {
					return busy
				}
				return nil
			})
			require.NoError(t, err)
			require.Equal(t, 5, calls)
		})
	})
	t.Run("permanent failures are not retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := &Share{retryTimeout: time.Minute}
			calls := 0
			err := s.retry(t.Context(), func() error {
				calls++
				return minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}
			})
			require.Error(t, err)
			require.Equal(t, 1, calls)
		})
	})
	t.Run("retries end after RetryTimeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := &Share{retryTimeout: 10 * time.Second}
			calls := 0
			start := time.Now()
			err := s.retry(t.Context(), func() error { calls++; return refused })
			require.ErrorIs(t, err, syscall.ECONNREFUSED)
			require.Greater(t, calls, 2)
			// On the bubble's fake clock: never past RetryTimeout.
			require.LessOrEqual(t, time.Since(start), 10*time.Second)
		})
	})
	t.Run("ctx ends the retries", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := &Share{retryTimeout: time.Hour}
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			err := s.retry(ctx, func() error { return refused })
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.ErrorIs(t, s.fail("stat", "x", err), library.ErrOffline)
		})
	})
	t.Run("negative RetryTimeout: one attempt", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s := &Share{retryTimeout: -1}
			calls := 0
			err := s.retry(t.Context(), func() error { calls++; return busy })
			require.Error(t, err)
			require.Equal(t, 1, calls)
		})
	})
	t.Run("done ctx: no attempt", func(t *testing.T) {
		s := &Share{retryTimeout: time.Minute}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := s.retry(ctx, func() error { t.Fatal("op called"); return nil })
		require.ErrorIs(t, err, context.Canceled)
	})
}
