package s3share

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/vmmkit/vmmkit/library"
)

// maxSumLen bounds the sums WritePart records, which go into a key (S3
// keys are at most 1024 bytes): a SHA-512 fits twice.
const maxSumLen = 128

// Create starts, or resumes, the multipart upload of name. partSize must
// be at least MinPartSize unless the file fits in one part.
func (s *Share) Create(ctx context.Context, name string, size, partSize int64) (library.Upload, error) {
	if err := library.CheckName(name); err != nil {
		return nil, s.fail("create", name, err)
	}
	if size < 0 || partSize <= 0 {
		return nil, s.fail("create", name, fmt.Errorf("bad size %d or part size %d", size, partSize))
	}
	n := library.NumChunks(size, partSize)
	switch {
	case n > 1 && partSize < MinPartSize:
		return nil, s.fail("create", name, fmt.Errorf("part size %d is below S3's minimum of %d bytes (5 MiB) for a file of %d parts", partSize, MinPartSize, n))
	case n > 1 && partSize > maxPartSize:
		return nil, s.fail("create", name, fmt.Errorf("part size %d is above S3's maximum of %d bytes (5 GiB)", partSize, int64(maxPartSize)))
	case n > maxParts:
		return nil, s.fail("create", name, fmt.Errorf("%d parts of %d bytes: S3 allows at most %d parts", n, partSize, maxParts))
	}
	if err := ctx.Err(); err != nil {
		return nil, s.fail("create", name, err)
	}
	u := &upload{s: s, name: name, key: s.key(name), size: size, partSize: partSize}
	id, err := s.findUpload(ctx, u.key, size, partSize)
	if err != nil {
		return nil, s.fail("create", name, err)
	}
	if id == "" {
		// No retries: each attempt would start another upload. A failed
		// one is left for the next Create to ignore (it has no info).
		id, err = s.core.NewMultipartUpload(ctx, s.bucket, u.key, minio.PutObjectOptions{})
		if err != nil {
			return nil, s.fail("create", name, err)
		}
		u.id = id
		if err := s.putMarker(ctx, u.infoKey()); err != nil {
			s.core.AbortMultipartUpload(context.WithoutCancel(ctx), s.bucket, u.key, id)
			return nil, s.fail("create", name, err)
		}
	}
	u.id = id
	return u, nil
}

// findUpload returns the ID of the newest multipart upload of key made by
// Create for size and partSize, or "".
func (s *Share) findUpload(ctx context.Context, key string, size, partSize int64) (string, error) {
	var found []minio.ObjectMultipartInfo
	keyMarker, idMarker := "", ""
	for {
		var res minio.ListMultipartUploadsResult
		err := s.retry(ctx, func() (err error) {
			res, err = s.core.ListMultipartUploads(ctx, s.bucket, key, keyMarker, idMarker, "", 1000)
			return err
		})
		if err != nil {
			return "", err
		}
		for _, up := range res.Uploads {
			if up.Key == key {
				found = append(found, up)
			}
		}
		if !res.IsTruncated || (res.NextKeyMarker == keyMarker && res.NextUploadIDMarker == idMarker) {
			break
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Initiated.After(found[j].Initiated) })
	for _, up := range found {
		_, err := s.stat(ctx, s.markerDir(up.UploadID)+infoName(size, partSize))
		if err == nil {
			return up.UploadID, nil
		}
		if kind, _ := classify(err); kind != library.ErrNotFound {
			return "", err
		}
	}
	return "", nil
}

func (s *Share) markerDir(id string) string { return s.prefix + uploadsDir + id + "/" }

func infoName(size, partSize int64) string {
	return "info." + strconv.FormatInt(size, 10) + "." + strconv.FormatInt(partSize, 10)
}

func partMarker(n int, etag string, sum []byte) string {
	return "p" + strconv.Itoa(n) + "." + etag + "." + hex.EncodeToString(sum)
}

// putMarker stores an empty object.
func (s *Share) putMarker(ctx context.Context, key string) error {
	return s.retry(ctx, func() error {
		_, err := s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(nil), 0, minio.PutObjectOptions{})
		return err
	})
}

// listKeys returns the keys under prefix.
func (s *Share) listKeys(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	after := ""
	err := s.retry(ctx, func() error {
		lctx, cancel := context.WithCancel(ctx)
		defer cancel()
		for oi := range s.client.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true, StartAfter: after}) {
			if oi.Err != nil {
				return oi.Err
			}
			keys = append(keys, oi.Key)
			after = oi.Key
		}
		return ctx.Err()
	})
	return keys, err
}

// removeKeys removes keys, best effort.
func (s *Share) removeKeys(ctx context.Context, keys []string) error {
	var errs []error
	for _, k := range keys {
		err := s.retry(ctx, func() error {
			return s.client.RemoveObject(ctx, s.bucket, k, minio.RemoveObjectOptions{})
		})
		if err != nil && code(err) != "NoSuchKey" {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type upload struct {
	s              *Share
	name, key, id  string
	size, partSize int64

	mu   sync.Mutex
	done bool // committed or aborted
}

func (u *upload) infoKey() string { return u.s.markerDir(u.id) + infoName(u.size, u.partSize) }

func (u *upload) numParts() int { return library.NumChunks(u.size, u.partSize) }

func (u *upload) partLen(n int) int64 { return min(u.partSize, u.size-int64(n)*u.partSize) }

func (u *upload) finished() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return errors.New("upload already committed, aborted or closed")
	}
	return nil
}

// storedPart is a part S3 holds, with the sum of its marker.
type storedPart struct {
	etag string
	size int64
	sum  []byte
	ok   bool // a marker names this ETag, and only one does
}

// stored lists the parts S3 holds and joins them with their markers.
func (u *upload) stored(ctx context.Context) (map[int]*storedPart, error) {
	parts := map[int]*storedPart{}
	marker := 0
	for {
		var res minio.ListObjectPartsResult
		err := u.s.retry(ctx, func() (err error) {
			res, err = u.s.core.ListObjectParts(ctx, u.s.bucket, u.key, u.id, marker, 1000)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, p := range res.ObjectParts {
			parts[p.PartNumber-1] = &storedPart{etag: strings.Trim(p.ETag, `"`), size: p.Size}
		}
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			break
		}
		marker = res.NextPartNumberMarker
	}
	keys, err := u.s.listKeys(ctx, u.s.markerDir(u.id)+"p")
	if err != nil {
		return nil, err
	}
	seen := map[int]int{}
	for _, k := range keys {
		f := strings.SplitN(strings.TrimPrefix(k, u.s.markerDir(u.id)+"p"), ".", 3)
		if len(f) != 3 {
			continue
		}
		n, err1 := strconv.Atoi(f[0])
		sum, err2 := hex.DecodeString(f[2])
		p := parts[n]
		if err1 != nil || err2 != nil || p == nil || p.etag != f[1] {
			continue
		}
		seen[n]++
		p.sum, p.ok = sum, seen[n] == 1
	}
	return parts, nil
}

// Parts reports the parts S3 holds with the size they must have and a
// marker for their ETag.
func (u *upload) Parts(ctx context.Context) (map[int]library.Part, error) {
	if err := ctx.Err(); err != nil {
		return nil, u.s.fail("parts", u.name, err)
	}
	if err := u.finished(); err != nil {
		return nil, u.s.fail("parts", u.name, err)
	}
	parts, err := u.stored(ctx)
	if err != nil {
		return nil, u.s.fail("parts", u.name, err)
	}
	out := map[int]library.Part{}
	for n, p := range parts {
		if p.ok && n < u.numParts() && p.size == u.partLen(n) {
			out[n] = library.Part{Size: p.size, Sum: p.sum}
		}
	}
	return out, nil
}

// WritePart uploads part n (S3 part number n+1), then records sum (at
// most 128 bytes) in a marker naming the part's ETag, then removes the
// markers of the part's earlier writes.
func (u *upload) WritePart(ctx context.Context, n int, p []byte, sum []byte) error {
	if n < 0 || n >= u.numParts() || int64(len(p)) != u.partLen(n) {
		return u.s.fail("write", u.name, fmt.Errorf("part %d of %d bytes does not fit an upload of %d bytes in parts of %d", n, len(p), u.size, u.partSize))
	}
	if len(sum) > maxSumLen {
		return u.s.fail("write", u.name, fmt.Errorf("sum of %d bytes: at most %d", len(sum), maxSumLen))
	}
	if err := ctx.Err(); err != nil {
		return u.s.fail("write", u.name, err)
	}
	if err := u.finished(); err != nil {
		return u.s.fail("write", u.name, err)
	}
	var part minio.ObjectPart
	err := u.s.retry(ctx, func() (err error) {
		part, err = u.s.core.PutObjectPart(ctx, u.s.bucket, u.key, u.id, n+1, bytes.NewReader(p), int64(len(p)), minio.PutObjectPartOptions{})
		return err
	})
	if err != nil {
		return u.s.fail("write", u.name, err)
	}
	prefix := u.s.markerDir(u.id) + "p" + strconv.Itoa(n) + "."
	mk := u.s.markerDir(u.id) + partMarker(n, strings.Trim(part.ETag, `"`), sum)
	if err := u.s.putMarker(ctx, mk); err != nil {
		return u.s.fail("write", u.name, err)
	}
	keys, err := u.s.listKeys(ctx, prefix)
	if err != nil {
		return u.s.fail("write", u.name, err)
	}
	var stale []string
	for _, k := range keys {
		if k != mk {
			stale = append(stale, k)
		}
	}
	return u.s.fail("write", u.name, u.s.removeKeys(ctx, stale))
}

// Commit completes the upload without replacing an existing object.
func (u *upload) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return u.s.fail("commit", u.name, err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return u.s.fail("commit", u.name, errors.New("upload already committed, aborted or closed"))
	}
	if err := u.commit(ctx); err != nil {
		return u.s.fail("commit", u.name, err)
	}
	u.done = true
	u.cleanup(ctx)
	return nil
}

func (u *upload) commit(ctx context.Context) error {
	// The common case of a name already taken, also on a store that would
	// not honour If-None-Match.
	if _, err := u.s.stat(ctx, u.key); err == nil {
		return fmt.Errorf("%w: %s", library.ErrExist, u.name)
	} else if kind, _ := classify(err); kind != library.ErrNotFound {
		return err
	}
	parts, err := u.stored(ctx)
	if err != nil {
		return err
	}
	var complete []minio.CompletePart
	for n := range u.numParts() {
		p := parts[n]
		// Stored as Parts reports it: with its size and its marker.
		if p == nil || !p.ok || p.size != u.partLen(n) {
			return fmt.Errorf("part %d of %d not stored", n, u.numParts())
		}
		complete = append(complete, minio.CompletePart{PartNumber: n + 1, ETag: p.etag})
	}
	opts := minio.PutObjectOptions{}
	opts.SetMatchETagExcept("*")
	if u.size == 0 {
		// S3 completes no upload without parts: an empty object is a PUT,
		// conditional like the completion.
		err := u.s.retry(ctx, func() error {
			_, err := u.s.client.PutObject(ctx, u.s.bucket, u.key, bytes.NewReader(nil), 0, opts)
			return err
		})
		if code(err) == "PreconditionFailed" {
			return fmt.Errorf("%w: %s: %w", library.ErrExist, u.name, err)
		}
		if err == nil {
			u.s.core.AbortMultipartUpload(ctx, u.s.bucket, u.key, u.id)
		}
		return err
	}
	want := multipartETag(complete)
	attempt := 0
	return u.s.retry(ctx, func() error {
		attempt++
		if attempt > 1 {
			// The last attempt failed in transit: it may have completed.
			// Only if the upload still exists is trying again safe.
			_, err := u.s.core.ListObjectParts(ctx, u.s.bucket, u.key, u.id, 0, 1)
			if code(err) == "NoSuchUpload" {
				oi, serr := u.s.client.StatObject(ctx, u.s.bucket, u.key, minio.StatObjectOptions{})
				if serr == nil && want != "" && strings.Trim(oi.ETag, `"`) == want {
					return nil
				}
				return errors.Join(errors.New("the upload is gone, and the object is not the one its parts make"), err)
			} else if err != nil {
				return err // transient: ask again later
			}
		}
		_, err := u.s.core.CompleteMultipartUpload(ctx, u.s.bucket, u.key, u.id, complete, opts)
		if code(err) == "PreconditionFailed" {
			return fmt.Errorf("%w: %s: %w", library.ErrExist, u.name, err)
		}
		return err
	})
}

// multipartETag is the ETag S3 gives the object made of parts: the MD5 of
// the parts' MD5s, a dash, and the part count; "" if a part's ETag is not
// an MD5.
func multipartETag(parts []minio.CompletePart) string {
	h := md5.New()
	for _, p := range parts {
		b, err := hex.DecodeString(strings.Trim(p.ETag, `"`))
		if err != nil || len(b) != md5.Size {
			return ""
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(parts))
}

// cleanup removes the upload's markers, best effort: left-overs are
// hidden, and belong to an upload that no longer lists.
func (u *upload) cleanup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	keys, err := u.s.listKeys(ctx, u.s.markerDir(u.id))
	if err == nil {
		u.s.removeKeys(ctx, keys)
	}
}

// Close ends this Upload value and keeps the multipart upload and its
// markers on the server for a later Create to resume. S3 has no locks, so
// unlike a DirShare's, an upload of the same name, size and part size can
// be resumed by two writers at once; the last part written wins.
func (u *upload) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.done = true
	return nil
}

// Abort aborts the multipart upload and removes its markers.
func (u *upload) Abort(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return u.s.fail("abort", u.name, err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil
	}
	err := u.s.retry(ctx, func() error {
		return u.s.core.AbortMultipartUpload(ctx, u.s.bucket, u.key, u.id)
	})
	if err != nil && code(err) != "NoSuchUpload" {
		return u.s.fail("abort", u.name, err)
	}
	u.done = true
	u.cleanup(ctx)
	return nil
}
