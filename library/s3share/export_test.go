package s3share

import "github.com/minio/minio-go/v7"

// Client returns the share's client, for tests that look behind its back.
func Client(s *Share) minio.Core { return s.core }
