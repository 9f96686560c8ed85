package history

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"iter"
	"path"
	"strings"
)

// A tarEntry is a regular file of an archive: its name in the archive and
// its contents, readable until the next entry.
type tarEntry struct {
	Name string
	Body io.Reader
}

// tarFiles yields the regular files of a tar archive, gzip-compressed or
// not (told by the gzip magic number). It skips what is not a regular
// file (folders, links, devices) and what is not trace data: files whose
// base name starts with "." (among them the "._name" AppleDouble files
// macOS's tar adds beside each file) and everything under a "__MACOSX"
// folder. An archive that cannot be read yields its error  and ends.
//
// It is the one place ReadBitbrainsTar and ReadPlanetLabTar open
// archives, so that both skip the same entries.
func tarFiles(r io.Reader) iter.Seq2[tarEntry, error] {
	return func(yield func(tarEntry, error) bool) {
		br := bufio.NewReader(r)
		var src io.Reader = br
		if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
			zr, err := gzip.NewReader(br)
			if err != nil {
				yield(tarEntry{}, err)
				return
			}
			defer zr.Close()
			src = zr
		}
		tr := tar.NewReader(src)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(tarEntry{}, err)
				return
			}
			if !hdr.FileInfo().Mode().IsRegular() || skipTarName(hdr.Name) {
				continue
			}
			if !yield(tarEntry{hdr.Name, tr}, nil) {
				return
			}
		}
	}
}

// skipTarName reports whether an archive member is not trace data: a
// hidden or AppleDouble file, or anything under a "__MACOSX" folder.
func skipTarName(name string) bool {
	base := path.Base(name)
	if base == "" || base == "." || base == "/" || strings.HasPrefix(base, ".") {
		return true
	}
	for _, part := range strings.Split(name, "/") {
		if part == "__MACOSX" {
			return true
		}
	}
	return false
}
