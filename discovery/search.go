package discovery

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/cenkalti/backoff/v4"
	"github.com/go-ldap/ldap/v3"
)

// A page is the result of one paged search request.
type page struct {
	entries []*ldap.Entry
	cookie  []byte
}

// searchPage sends one request of a paged search (cookie nil for the first)
// and collects its page. A continuation reference fails the page with
// ErrReferral unless skipRefs, and a referral always does.
func searchPage(ctx context.Context, conn *ldap.Conn, req ldap.SearchRequest, size int, cookie []byte, skipRefs bool) (page, error) {
	paging := ldap.NewControlPaging(uint32(size))
	paging.SetCookie(cookie)
	req.Controls = append(append([]ldap.Control(nil), req.Controls...), paging)
	resp := conn.SearchAsync(ctx, &req, size+1)
	var p page
	gotDone := false
	for resp.Next() {
		if e := resp.Entry(); e != nil {
			p.entries = append(p.entries, e)
			continue
		}
		if ref := resp.Referral(); ref != "" {
			if skipRefs {
				continue
			}
			return p, &ldap.Error{ResultCode: ldap.LDAPResultReferral,
				Err: fmt.Errorf("search continuation reference to %s (not followed)", redactURL(ref))}
		}
		if c := ldap.FindControl(resp.Controls(), ldap.ControlTypePaging); c != nil {
			gotDone = true
			if pc, ok := c.(*ldap.ControlPaging); ok {
				p.cookie = pc.Cookie
			}
		}
	}
	if err := resp.Err(); err != nil {
		var le *ldap.Error
		if !errors.As(err, &le) && ctx.Err() == nil {
			// go-ldap reports a lost connection as a plain error; give it
			// the LDAP result code callers can branch on.
			err = ldap.NewError(ldap.ErrorNetwork, err)
		}
		return p, err
	}
	if err := ctx.Err(); err != nil {
		return p, err
	}
	if !gotDone && conn.IsClosing() {
		return p, ldap.NewError(ldap.ErrorNetwork, errors.New("connection closed before the end of the page"))
	}
	return p, nil
}

// abandonPaging tells the server to drop a paged search's state (a request
// with page size 0 and the last cookie). Errors are ignored.
func abandonPaging(conn *ldap.Conn, req ldap.SearchRequest, cookie []byte) {
	paging := ldap.NewControlPaging(0)
	paging.SetCookie(cookie)
	req.Controls = append(append([]ldap.Control(nil), req.Controls...), paging)
	_, _ = conn.Search(&req)
}

// rangeAttr matches an attribute name cut by range retrieval:
// "servicePrincipalName;range=0-1499".
var rangeAttr = regexp.MustCompile(`^([^;]+);range=(\d+)-(\d+|\*)$`)

// completeRanges fetches the rest of every attribute of e that the server
// cut by range retrieval, and stores the values under the plain name.
func completeRanges(ctx context.Context, conn *ldap.Conn, e *ldap.Entry) error {
	for _, a := range e.Attributes {
		m := rangeAttr.FindStringSubmatch(a.Name)
		if m == nil {
			continue
		}
		name := m[1]
		values, raw := a.Values, a.ByteValues
		end := m[3]
		for end != "*" {
			next, err := strconv.Atoi(end)
			if err != nil {
				return fmt.Errorf("range retrieval of %s: %w", name, err)
			}
			want := fmt.Sprintf("%s;range=%d-*", name, next+1)
			res, err := searchAll(ctx, conn, ldap.SearchRequest{
				BaseDN: e.DN, Scope: ldap.ScopeBaseObject, DerefAliases: ldap.NeverDerefAliases,
				Filter: "(objectClass=*)", Attributes: []string{want},
			})
			if err != nil {
				return err
			}
			var got *ldap.EntryAttribute
			for _, r := range res {
				for _, ra := range r.Attributes {
					if mm := rangeAttr.FindStringSubmatch(ra.Name); mm != nil && strings.EqualFold(mm[1], name) {
						got = ra
						end = mm[3]
					}
				}
			}
			if got == nil {
				return fmt.Errorf("range retrieval of %s: server returned no range after %d", name, next)
			}
			if start, _ := strconv.Atoi(rangeAttr.FindStringSubmatch(got.Name)[2]); start != next+1 {
				return fmt.Errorf("range retrieval of %s: asked from %d, got from %d", name, next+1, start)
			}
			values = append(values, got.Values...)
			raw = append(raw, got.ByteValues...)
		}
		a.Name, a.Values, a.ByteValues = name, values, raw
	}
	return nil
}

// searchAll runs an unpaged search, for small answers such as a base object.
func searchAll(ctx context.Context, conn *ldap.Conn, req ldap.SearchRequest) ([]*ldap.Entry, error) {
	resp := conn.SearchAsync(ctx, &req, 16)
	var out []*ldap.Entry
	for resp.Next() {
		if e := resp.Entry(); e != nil {
			out = append(out, e)
		} else if ref := resp.Referral(); ref != "" {
			return out, &ldap.Error{ResultCode: ldap.LDAPResultReferral,
				Err: fmt.Errorf("search continuation reference to %s (not followed)", redactURL(ref))}
		}
	}
	if err := resp.Err(); err != nil {
		return out, err
	}
	return out, ctx.Err()
}

// pagedSearch runs a paged search and calls page for each page's entries,
// until the last page, an error, or page returns false. The first page is
// retried (on a new connection) after a transient failure; later pages are
// not, since a paging cookie belongs to its connection and a new search
// would repeat entries. The error is an *OpError, or ctx's error.
func (c *Client) pagedSearch(ctx context.Context, op string, req ldap.SearchRequest, skipRefs bool,
	handle func(conn *ldap.Conn, url string, entries []*ldap.Entry) (bool, error)) error {
	var (
		conn *ldap.Conn
		url  string
		p    page
	)
	err := c.retry(ctx, op, func() error {
		var err error
		conn, url, err = c.connection(ctx)
		if err != nil {
			return err
		}
		p, err = searchPage(ctx, conn, req, c.cfg.PageSize, nil, skipRefs)
		if err != nil {
			if ctx.Err() != nil {
				return backoff.Permanent(ctx.Err())
			}
			e := classify(op, redactURL(url), err)
			if transient(e) {
				c.drop(conn)
			}
			return e
		}
		return nil
	})
	if err != nil {
		return err
	}
	for {
		more, err := handle(conn, url, p.entries)
		if err != nil || !more {
			if len(p.cookie) > 0 {
				abandonPaging(conn, req, p.cookie)
			}
			return err
		}
		if len(p.cookie) == 0 {
			return nil
		}
		p, err = searchPage(ctx, conn, req, c.cfg.PageSize, p.cookie, skipRefs)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			e := classify(op, redactURL(url), err)
			if transient(e) {
				c.drop(conn)
			}
			return e
		}
	}
}
