package discovery

// SetNoTokenGroups makes Authenticate resolve groups as if the server
// returned no tokenGroups (the in-chain search and the primary group).
func SetNoTokenGroups(c *Client, v bool) { c.noTokenGroups = v }
