package discovery

import (
	"context"
	"errors"
	"iter"
	"net"
	"net/netip"
	"sync"

	"github.com/go-ldap/ldap/v3"
)

// A Resolver looks up host names; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ErrNoDNSName is Host.ResolveErr for a host without a dNSHostName (an
// account pre-staged before its machine joined).
var ErrNoDNSName = errors.New("discovery: host has no dNSHostName")

// resolveWorkers bounds the concurrent look-ups of one page.
const resolveWorkers = 16

// Hosts yields the computer accounts that q selects, one page at a time, in
// the server's order. Disabled accounts are left out unless
// q.IncludeDisabled. Users, groups and other non-computer objects below the
// OU are never yielded.
//
// An error ends the iteration: a bad q (ErrQuery), a missing OU
// (ErrNoSuchOU), a referral (ErrReferral), a lost connection (ErrConnection)
// or ctx's error. The exception is an entry that cannot be decoded: its
// error is yielded with a zero Host and the iteration goes on if the caller
// goes on. Breaking out of the loop early abandons the search on the server.
// The iterator may be run more than once; each run searches anew.
func (c *Client) Hosts(ctx context.Context, q Query) iter.Seq2[Host, error] {
	return func(yield func(Host, error) bool) {
		base, filter, err := q.check()
		if err != nil {
			yield(Host{}, err)
			return
		}
		req := ldap.SearchRequest{
			BaseDN: q.OU, Scope: q.ldapScope(), DerefAliases: ldap.NeverDerefAliases,
			Filter: filter, Attributes: hostAttributes,
		}
		stopped := false
		err = c.pagedSearch(ctx, "search", req, false, func(conn *ldap.Conn, url string, entries []*ldap.Entry) (bool, error) {
			hosts := make([]Host, len(entries))
			errs := make([]error, len(entries))
			for i, e := range entries {
				if err := completeRanges(ctx, conn, e); err != nil {
					if ctx.Err() != nil {
						return false, ctx.Err()
					}
					return false, classify("search", redactURL(url), err)
				}
				hosts[i], errs[i] = decodeHost(e, base)
			}
			if q.Resolve {
				c.resolve(ctx, hosts, errs)
			}
			for i := range hosts {
				if errs[i] != nil {
					hosts[i] = Host{}
				}
				if !yield(hosts[i], errs[i]) {
					stopped = true
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil && !stopped {
			yield(Host{}, err)
		}
	}
}

// resolve looks up the hosts' DNS names, a few at a time.
func (c *Client) resolve(ctx context.Context, hosts []Host, errs []error) {
	r := c.cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, resolveWorkers)
	for i := range hosts {
		h := &hosts[i]
		if errs[i] != nil {
			continue
		}
		if h.DNSHostName == "" {
			h.ResolveErr = ErrNoDNSName
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			addrs, err := r.LookupNetIP(ctx, "ip", h.DNSHostName)
			h.Addrs, h.ResolveErr = addrs, err
			if err == nil && len(addrs) == 0 {
				h.ResolveErr = &net.DNSError{Err: "no addresses", Name: h.DNSHostName, IsNotFound: true}
			}
		})
	}
	wg.Wait()
}
