package library

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNearest(t *testing.T) {
	paris := newLibShare(t, "paris", "eu-west")
	berlin := newLibShare(t, "berlin", "eu-central")
	nyc := newLibShare(t, "nyc", "us-east")
	nyc2 := newLibShare(t, "nyc2", "us-east")
	data := []byte("golden image")
	for _, s := range []libShare{paris, berlin, nyc, nyc2} {
		writeLibFile(t, s.dir, "img.raw", data)
	}
	writeLibFile(t, paris.dir, "only-paris.raw", []byte("p"))
	costs := map[[2]string]float64{
		{"eu-west", "eu-central"}: 1,
		{"eu-central", "us-east"}: 8,
		{"eu-west", "us-east"}:    5,
		{"us-east", "us-west"}:    3,
	}
	l := newLib(t, Options{Costs: costs}, paris, berlin, nyc, nyc2)
	mustRefresh(t, l)
	img := find1(t, l, "img.raw")
	require.Len(t, img.Replicas, 4)

	for _, tc := range []struct {
		site, want string
	}{
		{"eu-west", "paris"},     // same site
		{"eu-central", "berlin"}, // same site
		{"us-east", "nyc"},       // same site, first share listed
		{"us-west", "nyc"},       // 3, the only cost listed
		{"asia", "paris"},        // no cost known: first share listed
	} {
		t.Run(tc.site, func(t *testing.T) {
			r, err := l.Nearest(img, tc.site)
			require.NoError(t, err)
			assert.Equal(t, tc.want, r.Share)
		})
	}

	// Costs are symmetric unless both directions are listed.
	r, err := l.Nearest(find1(t, l, "only-paris.raw"), "us-east")
	require.NoError(t, err)
	assert.Equal(t, "paris", r.Share)

	// Offline shares are skipped: berlin now goes to paris (1) not nyc (8).
	require.NoError(t, os.Rename(berlin.dir, filepath.Join(filepath.Dir(berlin.dir), "gone")))
	mustRefresh(t, l)
	img = find1(t, l, "img.raw")
	r, err = l.Nearest(img, "eu-central")
	require.NoError(t, err)
	assert.Equal(t, "paris", r.Share)

	require.NoError(t, os.Rename(paris.dir, paris.dir+".gone"))
	mustRefresh(t, l)
	_, err = l.Nearest(find1(t, l, "only-paris.raw"), "eu-west")
	assert.ErrorIs(t, err, ErrNotFound)

	// A cost function replaces the map.
	l2 := newLib(t, Options{Costs: costs, Cost: func(from, to string) (float64, bool) {
		if from == "us-east" {
			return 0.5, true
		}
		return 100, true
	}}, nyc, nyc2)
	mustRefresh(t, l2)
	r, err = l2.Nearest(find1(t, l2, "img.raw"), "eu-west")
	require.NoError(t, err)
	assert.Equal(t, "nyc", r.Share)
}
