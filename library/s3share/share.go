package s3share

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/vmmkit/vmmkit/library"
)

// MinPartSize is the smallest part size S3 accepts for every part of a
// multipart upload but the last.
const MinPartSize = 5 << 20

const (
	maxPartSize = 5 << 30
	maxParts    = 10000
	uploadsDir  = ".vmmkit-uploads/"
)

// Config describes a share on a bucket. Zero fields mean defaults.
type Config struct {
	Name string // the share's name in the library
	Site string // its location label

	Endpoint  string // host[:port] of the store, e.g. "s3.example.net" or "127.0.0.1:9000"
	Secure    bool   // HTTPS rather than HTTP
	AccessKey string
	SecretKey string
	Region    string // "" means us-east-1

	Bucket string // must exist
	// Prefix is the folder of the bucket the share keeps its files in:
	// "" for the whole bucket, else a library name such as "site-a/library"
	// (a trailing slash is optional).
	Prefix string

	// Transport carries the requests; nil means minio-go's default.
	Transport http.RoundTripper
	// RetryTimeout bounds how long one operation retries transient
	// failures, within its ctx; 0 means 10 s, a negative value no retries.
	RetryTimeout time.Duration
}

// A Share is a library.Share on a bucket prefix. It is safe for
// concurrent use.
type Share struct {
	name, site     string
	bucket, prefix string
	client         *minio.Client
	core           minio.Core
	retryTimeout   time.Duration
}

var _ library.Share = (*Share)(nil)

// New returns a share on cfg.Bucket. It sends no request: a store that
// is unreachable, or credentials it refuses, show in the first operation.
func New(cfg Config) (*Share, error) {
	fail := func(err error) error {
		return &library.ShareError{Op: "open share", Share: cfg.Name, Err: err}
	}
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, fail(errors.New("endpoint and bucket are required"))
	}
	if err := s3utils.CheckValidBucketNameStrict(cfg.Bucket); err != nil {
		return nil, fail(err)
	}
	prefix := strings.TrimSuffix(cfg.Prefix, "/")
	if prefix != "" {
		if err := library.CheckName(prefix); err != nil {
			return nil, fail(fmt.Errorf("prefix: %w", err))
		}
		prefix += "/"
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:    cfg.Secure,
		Region:    region,
		Transport: cfg.Transport,
		// Retries are the share's (see retry); 1 means a single attempt.
		MaxRetries:   1,
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return nil, fail(err)
	}
	rt := cfg.RetryTimeout
	if rt == 0 {
		rt = 10 * time.Second
	}
	return &Share{
		name: cfg.Name, site: cfg.Site,
		bucket: cfg.Bucket, prefix: prefix,
		client: c, core: minio.Core{Client: c},
		retryTimeout: rt,
	}, nil
}

func (s *Share) Name() string { return s.name }
func (s *Share) Site() string { return s.site }

// Bucket returns the share's bucket, and Prefix its key prefix ("" or
// ending in "/").
func (s *Share) Bucket() string { return s.bucket }
func (s *Share) Prefix() string { return s.prefix }

func (s *Share) key(name string) string { return s.prefix + name }

// fail wraps err for op on name in a *library.ShareError with the library
// error it stands for.
func (s *Share) fail(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var se *library.ShareError
	if errors.As(err, &se) {
		if se.Share == "" && se.Op == "check name" {
			// CheckName's error: say what was being done, and where.
			return &library.ShareError{Op: op, Share: s.name, Name: se.Name, Err: se.Err}
		}
		return err
	}
	if kind, _ := classify(err); kind != nil && !errors.Is(err, kind) {
		err = errors.Join(kind, err)
	}
	return &library.ShareError{Op: op, Share: s.name, Name: name, Err: err}
}

// errorResponse returns the S3 error inside err, if any.
func errorResponse(err error) (minio.ErrorResponse, bool) {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er, true
	}
	var per *minio.ErrorResponse
	if errors.As(err, &per) && per != nil {
		return *per, true
	}
	return er, false
}

func code(err error) string {
	er, _ := errorResponse(err)
	return er.Code
}

// classify returns the library error err stands for (nil when none does)
// and whether it is worth trying again.
func classify(err error) (kind error, transient bool) {
	if err == nil {
		return nil, false
	}
	if er, ok := errorResponse(err); ok {
		switch er.Code {
		case "NoSuchKey", "NoSuchUpload", "NoSuchBucket", "NoSuchVersion":
			return library.ErrNotFound, false
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
			"AccountProblem", "InvalidToken", "ExpiredToken", "InvalidSecurity", "XMinioAccessKeyDisabled":
			return library.ErrPermission, false
		case "EntityTooLarge", "XMinioStorageFull", "QuotaExceeded", "XMinioAdminBucketQuotaExceeded",
			"XMinioBucketQuotaExceeded", "StorageFull":
			return library.ErrNoSpace, false
		case "PreconditionFailed":
			return library.ErrExist, false
		case "SlowDown", "ServiceUnavailable", "XMinioServerNotInitialized", "XMinioReadQuorum",
			"XMinioWriteQuorum", "RequestTimeout", "RequestTimeTooSkewed":
			return library.ErrOffline, true
		}
		switch {
		case er.StatusCode == http.StatusNotFound:
			return library.ErrNotFound, false
		case er.StatusCode == http.StatusForbidden || er.StatusCode == http.StatusUnauthorized:
			return library.ErrPermission, false
		case er.StatusCode == http.StatusServiceUnavailable || er.StatusCode == http.StatusBadGateway ||
			er.StatusCode == http.StatusGatewayTimeout:
			return library.ErrOffline, true
		case er.StatusCode >= 500:
			return nil, true
		}
		return nil, false
	}
	if errors.Is(err, context.Canceled) {
		return nil, false
	}
	// A network failure, also when it is joined with ctx's deadline by
	// retry: the store did not answer.
	if minio.IsNetworkOrHostDown(err, false) || isNetTimeout(err) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return library.ErrOffline, true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return library.ErrOffline, true
	}
	return nil, false
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// retry runs op until it succeeds, fails for good, or the retries end
// (ctx done, or RetryTimeout spent). This is the only place the share
// retries; op must be safe to repeat.
func (s *Share) retry(ctx context.Context, op func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var b backoff.BackOff = &backoff.StopBackOff{}
	if s.retryTimeout > 0 {
		eb := backoff.NewExponentialBackOff()
		eb.InitialInterval = 50 * time.Millisecond
		eb.MaxInterval = 2 * time.Second
		eb.MaxElapsedTime = s.retryTimeout
		b = eb
	}
	b = backoff.WithContext(b, ctx)
	b.Reset()
	for {
		err := op()
		if err == nil {
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			if errors.Is(err, cerr) {
				return err
			}
			return errors.Join(err, cerr)
		}
		if _, transient := classify(err); !transient {
			return err
		}
		next := b.NextBackOff()
		if next == backoff.Stop {
			if cerr := ctx.Err(); cerr != nil {
				return errors.Join(err, cerr)
			}
			return err
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}
