package discovery

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// A Cursor is where an incremental sync stands: which domain controller
// answered, its uSNChanged high-water mark, and the hosts the query had then.
// A Cursor is a plain value that can be stored (it marshals to JSON) and
// given back to Changes later, also by another Client.
type Cursor struct {
	Query Query `json:"query"`
	// Server is the DN of the domain controller's NTDS Settings object
	// (rootDSE dsServiceName), and InvocationID the UUID of its database
	// (invocationId). USNs mean something only on the same server and
	// database; a Cursor from another one makes the next Changes resync.
	Server       string `json:"server,omitempty"`
	InvocationID string `json:"invocationId,omitempty"`
	// USN is the server's highestCommittedUSN when the cursor was made.
	USN int64 `json:"usn,omitempty"`
	// Hosts maps the objectGUID of each host the query had to its DN.
	Hosts map[string]string `json:"hosts,omitempty"`
}

// NewCursor returns a cursor for q from which the first Changes reports
// every host as added.
func NewCursor(q Query) Cursor { return Cursor{Query: q} }

// A ChangeKind says how a host changed.
type ChangeKind int

const (
	Added    ChangeKind = iota + 1 // new to the query's results
	Changed                        // still in the results, with some attribute changed
	MovedOut                       // no longer in the results: moved out of the OU, or disabled, or no longer matching the filter
	Deleted                        // deleted from the directory
)

func (k ChangeKind) String() string {
	switch k {
	case Added:
		return "added"
	case Changed:
		return "changed"
	case MovedOut:
		return "moved out"
	case Deleted:
		return "deleted"
	}
	return "ChangeKind(" + strconv.Itoa(int(k)) + ")"
}

// A Change is one host's change. For Added and Changed, Host is complete.
// For MovedOut and Deleted, only Host.GUID and Host.DN (the DN it had in the
// results) are set.
type Change struct {
	Kind ChangeKind
	Host Host
}

// Changes returns what changed in since.Query's results since the cursor
// was made, and the cursor to pass next time. When nothing was written on
// the server since the cursor, a poll costs two small requests (rootDSE and
// invocationId). Otherwise it searches the naming context for computers
// changed since the cursor (uSNChanged, which Windows AD indexes and Samba
// does not), and searches the OU only when there are some.
//
// The first call (a cursor from NewCursor) and a call after the server or
// its database changed (failover to another domain controller, a restore)
// read every host: hosts not in since are Added, hosts in since are Changed,
// and hosts in since but not found are MovedOut.
//
// Changes are reported at least once: a host changed while Changes runs may
// be reported again by the next call. Deleted hosts are found among the
// tombstones with the Show Deleted control; when the server refuses it, a
// search of the OU's membership finds them instead. On error the returned
// cursor is since, unchanged.
func (c *Client) Changes(ctx context.Context, since Cursor) ([]Change, Cursor, error) {
	q := since.Query
	if _, _, err := q.check(); err != nil {
		return nil, since, err
	}
	st, err := c.serverState(ctx)
	if err != nil {
		return nil, since, err
	}
	next := Cursor{Query: q, Server: st.server, InvocationID: st.invocationID, USN: st.highestUSN,
		Hosts: make(map[string]string, len(since.Hosts))}
	if since.USN == 0 || !strings.EqualFold(since.Server, st.server) || !strings.EqualFold(since.InvocationID, st.invocationID) {
		if since.USN != 0 {
			c.cfg.Logger.Info("discovery: cursor from another server or database; reading every host",
				"cursor_server", since.Server, "server", st.server)
		}
		changes, err := c.resync(ctx, q, since, next.Hosts)
		if err != nil {
			return nil, since, err
		}
		return changes, next, nil
	}
	if st.highestUSN == since.USN {
		// Nothing at all was written on this server since the cursor.
		return nil, since, nil
	}
	maps.Copy(next.Hosts, since.Hosts)

	// Computers that changed anywhere in the naming context, tombstones
	// included: when there are none, nothing below the OU changed either
	// and the search of the OU is skipped. The references to other naming
	// contexts (Configuration, DNS zones) that a search of the domain root
	// returns are skipped: hosts move only within their domain.
	usnFilter := fmt.Sprintf("(uSNChanged>=%d)", since.USN+1)
	outside := ldap.SearchRequest{
		BaseDN: st.namingContext, Scope: ldap.ScopeWholeSubtree, DerefAliases: ldap.NeverDerefAliases,
		Filter:     fmt.Sprintf("(&(objectClass=computer)%s(uSNChanged<=%d))", usnFilter, st.highestUSN),
		Attributes: []string{"objectGUID", "isDeleted"},
		Controls:   []ldap.Control{ldap.NewControlMicrosoftShowDeleted()},
	}
	changed := map[string]ChangeKind{} // GUID -> Deleted, or MovedOut if it is not found in the OU
	visit := func(_ *ldap.Conn, _ string, entries []*ldap.Entry) (bool, error) {
		for _, e := range entries {
			g, err := formatGUID(e.GetRawAttributeValue("objectGUID"))
			if err != nil {
				continue
			}
			if strings.EqualFold(e.GetAttributeValue("isDeleted"), "TRUE") {
				changed[g] = Deleted
			} else {
				changed[g] = MovedOut
			}
		}
		return true, nil
	}
	tombstones := true
	if err := c.pagedSearch(ctx, "changes", outside, true, visit); err != nil {
		if !ldap.IsErrorAnyOf(err, ldap.LDAPResultUnavailableCriticalExtension, ldap.LDAPResultInsufficientAccessRights) {
			return nil, since, err
		}
		c.cfg.Logger.Info("discovery: Show Deleted control refused; finding deletions by membership", "err", err)
		tombstones = false
		outside.Controls = nil
		if err := c.pagedSearch(ctx, "changes", outside, true, visit); err != nil {
			return nil, since, err
		}
	}
	if len(changed) == 0 && tombstones {
		return nil, next, nil
	}

	// Hosts in the results that changed: added or changed.
	var changes []Change
	seen := map[string]bool{}
	if len(changed) > 0 {
		for h, err := range c.Hosts(ctx, Query{OU: q.OU, Scope: q.Scope, IncludeDisabled: q.IncludeDisabled,
			Filter: q.Filter + usnFilter, Resolve: q.Resolve}) {
			if err != nil {
				return nil, since, err
			}
			kind := Changed
			if _, ok := since.Hosts[h.GUID]; !ok {
				kind = Added
			}
			seen[h.GUID] = true
			next.Hosts[h.GUID] = h.DN
			changes = append(changes, Change{Kind: kind, Host: h})
		}
	}
	// Known hosts that changed but are no longer in the results.
	gone := map[string]ChangeKind{}
	for g, kind := range changed {
		if _, known := since.Hosts[g]; known && !seen[g] {
			gone[g] = kind
		}
	}
	if !tombstones {
		// Known hosts neither in the results nor seen changed elsewhere were
		// deleted: look at who is still in the results.
		present := map[string]bool{}
		err := c.pagedSearch(ctx, "changes", ldap.SearchRequest{
			BaseDN: q.OU, Scope: q.ldapScope(), DerefAliases: ldap.NeverDerefAliases,
			Filter: q.filter(""), Attributes: []string{"objectGUID"},
		}, false, func(_ *ldap.Conn, _ string, entries []*ldap.Entry) (bool, error) {
			for _, e := range entries {
				if g, err := formatGUID(e.GetRawAttributeValue("objectGUID")); err == nil {
					present[g] = true
				}
			}
			return true, nil
		})
		if err != nil {
			return nil, since, err
		}
		for g := range since.Hosts {
			if !present[g] && gone[g] == 0 {
				gone[g] = Deleted
			}
		}
	}
	for g, kind := range gone {
		changes = append(changes, Change{Kind: kind, Host: Host{GUID: g, DN: since.Hosts[g]}})
		delete(next.Hosts, g)
	}
	return changes, next, nil
}

// resync reads every host of q and compares it with since.
func (c *Client) resync(ctx context.Context, q Query, since Cursor, hosts map[string]string) ([]Change, error) {
	var changes []Change
	for h, err := range c.Hosts(ctx, q) {
		if err != nil {
			return nil, err
		}
		kind := Added
		if _, ok := since.Hosts[h.GUID]; ok {
			kind = Changed
		}
		hosts[h.GUID] = h.DN
		changes = append(changes, Change{Kind: kind, Host: h})
	}
	for g, dn := range since.Hosts {
		if _, ok := hosts[g]; !ok {
			changes = append(changes, Change{Kind: MovedOut, Host: Host{GUID: g, DN: dn}})
		}
	}
	return changes, nil
}

// serverState is what Changes needs from the rootDSE.
type serverState struct {
	server        string // dsServiceName
	invocationID  string
	highestUSN    int64
	namingContext string
}

// serverState reads the rootDSE and the server's invocationId.
func (c *Client) serverState(ctx context.Context) (serverState, error) {
	var st serverState
	err := c.retry(ctx, "changes", func() error {
		conn, url, err := c.connection(ctx)
		if err != nil {
			return err
		}
		fail := func(err error) error {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e := classify("changes", redactURL(url), err)
			if transient(e) {
				c.drop(conn)
			}
			return e
		}
		root, err := searchAll(ctx, conn, ldap.SearchRequest{
			Scope: ldap.ScopeBaseObject, Filter: "(objectClass=*)",
			Attributes: []string{"dsServiceName", "highestCommittedUSN", "defaultNamingContext"},
		})
		if err != nil {
			return fail(err)
		}
		if len(root) != 1 {
			return fail(fmt.Errorf("rootDSE: %d entries", len(root)))
		}
		st.server = root[0].GetAttributeValue("dsServiceName")
		st.namingContext = root[0].GetAttributeValue("defaultNamingContext")
		st.highestUSN, err = strconv.ParseInt(root[0].GetAttributeValue("highestCommittedUSN"), 10, 64)
		if err != nil || st.server == "" || st.namingContext == "" {
			return fail(fmt.Errorf("rootDSE lacks dsServiceName, defaultNamingContext or highestCommittedUSN: not Active Directory?"))
		}
		ntds, err := searchAll(ctx, conn, ldap.SearchRequest{
			BaseDN: st.server, Scope: ldap.ScopeBaseObject, Filter: "(objectClass=*)",
			Attributes: []string{"invocationId"},
		})
		if err != nil {
			return fail(err)
		}
		if len(ntds) != 1 {
			return fail(fmt.Errorf("%s: %d entries", st.server, len(ntds)))
		}
		st.invocationID, err = formatGUID(ntds[0].GetRawAttributeValue("invocationId"))
		if err != nil {
			return fail(fmt.Errorf("invocationId: %w", err))
		}
		return nil
	})
	return st, err
}
