// Package s3share is a library.Share on a bucket (and key prefix) of an
// S3-compatible object store, such as MinIO or Amazon S3, through
// [minio-go].
//
// A file named "a/b.vhd" is the object Prefix+"a/b.vhd". List walks the
// prefix recursively and skips every key with an element starting with
// ".vmmkit" (the share's own bookkeeping), keys that are not valid
// library names (library.CheckName), and folder markers ending in "/".
// Stat is a HEAD request; Version is the object's ETag. Open reads ranges
// with GET requests pinned to the ETag seen by Open, so a File never mixes
// two versions: once the object is replaced or removed, ReadAt fails with
// library.ErrNotFound.
//
// # Uploads
//
// An Upload is an S3 multipart upload of the file's own key, so nothing is
// visible under the name until it completes: part n of the library is
// part number n+1 of S3. S3 wants every part but the last to be at least
// 5 MiB (MinPartSize) and at most 5 GiB, and at most 10 000 parts, so
// Create refuses a partSize below MinPartSize for a file of more than one
// part (library.ChunkSize, 8 MiB, fits).
//
// The sums given to WritePart must survive a crash of the caller, and S3
// keeps no metadata per part. The share keeps them in empty marker objects
// whose keys carry them, under the hidden prefix
// Prefix+".vmmkit-uploads/UPLOAD-ID/":
//
//	info.SIZE.PARTSIZE     written by Create: what the upload is for
//	pN.ETAG.SUMHEX         written by WritePart after part N is stored
//
// (so a sum is at most 128 bytes, and the prefix should stay short enough
// for such keys to fit S3's 1024 bytes).
// A marker names the part's ETag, so a part is reported by Parts only when
// S3 holds it with the size it must have and a marker for that very ETag:
// a part written again whose marker was lost to a crash is reported as
// missing (and written again by the caller), never with a stale sum. One
// listing reads every marker, however many parts there are. Create
// resumes an upload by listing the multipart uploads of the key
// (ListMultipartUploads) and taking the newest whose info marker matches
// size and partSize; uploads for another size are left alone.
//
// # Commit
//
// Commit checks that every part is stored, then completes the multipart
// upload with the condition If-None-Match: *, which S3 and MinIO honour on
// CompleteMultipartUpload: an existing object is never replaced, and the
// losing Commit fails with library.ErrExist and keeps its upload. (The
// share also checks for the object first, so that a store that ignores
// the condition still reports ErrExist in the common case; on such a
// store two Commits racing for one name could both succeed, the later
// one winning.) A Commit that fails in transit is not simply sent again:
// the share first asks whether the upload still exists, and if it does
// not, compares the object's ETag with the one the parts make (the MD5 of
// the parts' MD5s and the part count) to learn whether the lost answer
// was a success. A zero-byte file has no parts; Commit stores it with a
// conditional PUT.
//
// Rename is a server-side copy pinned to the source's ETag, then a delete
// of the source, after a check that the new name is free; it is not
// atomic (readers may see both names for a moment, and a crash in between
// leaves both), and a file created under the new name between the check
// and the copy is replaced. Remove checks that the file exists, so that a
// missing name is library.ErrNotFound as on a directory.
//
// # Errors and retries
//
// Every error is a *library.ShareError; the minio-go error stays reachable
// with errors.As (minio.ErrorResponse). NoSuchKey, NoSuchUpload and
// NoSuchBucket are library.ErrNotFound; AccessDenied, InvalidAccessKeyId
// and SignatureDoesNotMatch library.ErrPermission; EntityTooLarge,
// XMinioStorageFull and the quota errors library.ErrNoSpace; a refused or
// timed-out connection, a reset, and 503 answers library.ErrOffline.
// Transient failures (network errors, 5xx answers, SlowDown) are retried
// here, and only here (minio-go's own retries are turned off), with
// exponential backoff bound by ctx and by Config.RetryTimeout; when ctx
// ends during the retries, the error wraps both ctx's error and the last
// failure (so an unreachable store is ErrOffline even then).
//
// [minio-go]: https://github.com/minio/minio-go
package s3share
