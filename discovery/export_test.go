package discovery

import "sync/atomic"

// SetNoTokenGroups makes Authenticate resolve groups as if the server
// returned no tokenGroups (the in-chain search and the primary group).
func SetNoTokenGroups(c *Client, v bool) { c.noTokenGroups = v }

// CountUserBinds makes c count the binds Authenticate makes and returns
// the counter.
func CountUserBinds(c *Client) *atomic.Int64 {
	c.userBinds = new(atomic.Int64)
	return c.userBinds
}
