package discovery

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFormatSID(t *testing.T) {
	for _, tc := range []struct{ b64, want string }{
		// a domain group (checked with Python struct) and two well-known SIDs
		{"AQUAAAAAAAUVAAAArZUK+Jw54sHFdNz3TwoAAA==", "S-1-5-21-4161443245-3252828572-4158420165-2639"},
		{"AQIAAAAAAAUgAAAAIQIAAA==", "S-1-5-32-545"},
		{"AQEAAAAAAAEAAAAA", "S-1-1-0"},
	} {
		b, err := base64.StdEncoding.DecodeString(tc.b64)
		require.NoError(t, err)
		got, err := FormatSID(b)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got)
	}
	for _, bad := range [][]byte{nil, {1}, {2, 0, 0, 0, 0, 0, 0, 5}, {1, 1, 0, 0, 0, 0, 0, 5}, {1, 16, 0, 0, 0, 0, 0, 5}} {
		_, err := FormatSID(bad)
		assert.Error(t, err, "%x", bad)
	}
}

func FuzzFormatSID(f *testing.F) {
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Add([]byte{1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 33, 2, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := FormatSID(b)
		if err != nil {
			return
		}
		if !strings.HasPrefix(s, "S-1-") || strings.Count(s, "-") != 2+int(b[1]) {
			t.Fatalf("FormatSID(%x) = %q", b, s)
		}
	})
}

func TestAccountName(t *testing.T) {
	for in, want := range map[string]string{
		"alice": "alice", `LAB\alice`: "alice", "alice@lab.example.com": "alice@lab.example.com",
		"a(b)*": "a(b)*", // escaped in the filter, not refused
	} {
		got, ok := accountName(in)
		assert.True(t, ok, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", " alice", "alice ", `LAB\`, `a\b\c`, "al\x00ice", "al\nice", strings.Repeat("a", maxUserName+1)} {
		_, ok := accountName(bad)
		assert.False(t, ok, "%q", bad)
	}
}

// An empty password never reaches the server: it would be an anonymous
// bind, which servers accept.
func TestAuthenticateRefusesEmptyPasswordOffline(t *testing.T) {
	c := &Client{cfg: Config{URLs: []string{"ldaps://192.0.2.1"}}}
	_, err := c.Authenticate(context.Background(), "alice", "")
	assert.ErrorIs(t, err, ErrInvalidCredentials)
}
