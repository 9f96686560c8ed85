package library

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// makeISO returns an ISO 9660 image of blocks 2048-byte blocks whose
// primary volume descriptor names label, optionally after an El Torito
// boot record.
func makeISO(label string, blocks int, boot bool) []byte {
	img := make([]byte, blocks*isoSectorSize)
	sec := isoFirstVD
	vd := func(typ byte) []byte {
		b := img[sec*isoSectorSize : (sec+1)*isoSectorSize]
		b[0] = typ
		copy(b[1:6], "CD001")
		b[6] = 1
		sec++
		return b
	}
	if boot {
		b := vd(0)
		copy(b[7:], "EL TORITO SPECIFICATION")
	}
	p := vd(1)
	copy(p[8:40], bytes.Repeat([]byte(" "), 32))
	copy(p[8:], "LINUX")
	copy(p[40:72], bytes.Repeat([]byte(" "), 32))
	copy(p[40:], label)
	binary.LittleEndian.PutUint32(p[80:], uint32(blocks))
	binary.BigEndian.PutUint32(p[84:], uint32(blocks))
	binary.LittleEndian.PutUint16(p[128:], isoSectorSize)
	binary.BigEndian.PutUint16(p[130:], isoSectorSize)
	vd(255)
	return img
}

func TestReadISO(t *testing.T) {
	good := makeISO("WIN2003_STD", 40, true)
	plain := makeISO("DATA", 24, false)
	mixedEndian := makeISO("X", 24, false)
	binary.BigEndian.PutUint32(mixedEndian[16*isoSectorSize+84:], 99)
	badBlock := makeISO("X", 24, false)
	binary.LittleEndian.PutUint16(badBlock[16*isoSectorSize+128:], 3)
	binary.BigEndian.PutUint16(badBlock[16*isoSectorSize+130:], 3)

	for _, tc := range []struct {
		name    string
		data    []byte
		want    *ISOInfo
		wantErr error
	}{
		{"bootable", good, &ISOInfo{VolumeLabel: "WIN2003_STD", SystemID: "LINUX", BlockSize: 2048, VolumeSize: 40 * 2048, Bootable: true}, nil},
		{"plain", plain, &ISOInfo{VolumeLabel: "DATA", SystemID: "LINUX", BlockSize: 2048, VolumeSize: 24 * 2048}, nil},
		{"truncated", good[:30*isoSectorSize], nil, ErrCorrupt},
		{"cut before the descriptors", good[:16*isoSectorSize+100], nil, ErrCorrupt},
		{"empty", nil, nil, ErrCorrupt},
		{"not an ISO", bytes.Repeat([]byte{0xAA}, 40*isoSectorSize), nil, ErrCorrupt},
		{"endians disagree", mixedEndian, nil, ErrCorrupt},
		{"odd block size", badBlock, nil, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadISO(bytes.NewReader(tc.data), int64(len(tc.data)))
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestReadISOTestdata reads the images in testdata, made by makeISO and
// kept as fuzz seeds.
func TestReadISOTestdata(t *testing.T) {
	info, err := readISOFile(t, "testdata/boot.iso")
	require.NoError(t, err)
	assert.Equal(t, "VMMKIT_BOOT", info.VolumeLabel)
	assert.True(t, info.Bootable)
	_, err = readISOFile(t, "testdata/truncated.iso")
	assert.ErrorIs(t, err, ErrCorrupt)
}

func readISOFile(t *testing.T, name string) (*ISOInfo, error) {
	t.Helper()
	data, err := os.ReadFile(name)
	require.NoError(t, err)
	return ReadISO(bytes.NewReader(data), int64(len(data)))
}

// FuzzISO feeds ReadISO images whose first 16 sectors (the system area,
// which ReadISO does not read) are zeros and whose rest is the fuzzer's
// input: small inputs, so that the fuzzer mutates the descriptors.
func FuzzISO(f *testing.F) {
	const skip = isoFirstVD * isoSectorSize
	f.Add(makeISO("A", 18, false)[skip:])
	f.Add(makeISO("B", 20, true)[skip:])
	f.Add(makeISO("B", 30, true)[skip : 19*isoSectorSize])
	names, _ := filepath.Glob("testdata/*.iso")
	for _, n := range names {
		if data, err := os.ReadFile(n); err == nil && len(data) > skip {
			f.Add(data[skip:])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		size := int64(skip + len(data))
		info, err := ReadISO(io.NewSectionReader(afterZeros{skip, data}, 0, size), size)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		if info.VolumeSize > size {
			t.Fatalf("volume of %d bytes in %d bytes of data", info.VolumeSize, size)
		}
		if info.BlockSize != 512 && info.BlockSize != 1024 && info.BlockSize != 2048 {
			t.Fatalf("block size %d", info.BlockSize)
		}
	})
}

// afterZeros reads as n zero bytes followed by data.
type afterZeros struct {
	n    int
	data []byte
}

func (z afterZeros) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	done := 0
	for done < len(p) {
		o := off + int64(done)
		switch {
		case o < int64(z.n):
			k := min(len(p)-done, z.n-int(o))
			clear(p[done : done+k])
			done += k
		case o-int64(z.n) < int64(len(z.data)):
			done += copy(p[done:], z.data[o-int64(z.n):])
		default:
			return done, io.EOF
		}
	}
	return done, nil
}
