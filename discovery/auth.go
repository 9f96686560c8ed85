package discovery

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/go-ldap/ldap/v3"
)

// An Account is a directory user whose password Authenticate checked.
type Account struct {
	DN             string
	SAMAccountName string
	UPN            string // userPrincipalName; may be empty
	DisplayName    string
	// Groups holds the sAMAccountName of every security group the account
	// is in, directly, through nesting, or as its primary group, sorted and
	// without repeats. GroupDNs holds their DNs, in the same order.
	Groups   []string
	GroupDNs []string
}

// maxUserName bounds the user names Authenticate looks up (a UPN is at most
// 1 024 characters in AD; sAMAccountName 20).
const maxUserName = 1024

// sAMAccountType of normal user accounts (SAM_NORMAL_USER_ACCOUNT): not
// computers, not trust accounts, not groups.
const normalUserAccount = "805306368"

// Authenticate checks a user's password against the directory and returns
// the account with its groups. user is a sAMAccountName ("alice"), a
// down-level name ("LAB\alice", the domain part is not checked), or a user
// principal name ("alice@lab.example.com").
//
// The account is looked up with the Client's own bind under
// Config.UserBase (default: the whole domain; groups are always looked up
// in the whole domain), then its password is checked
// by a bind as the account on a connection of its own, secured as the
// Client's are and closed before Authenticate returns; the Client's
// connection keeps its own bind. The groups come from the account's
// tokenGroups, read on that connection (nested groups and the primary group
// included), or, when the server does not return tokenGroups, from a
// transitive member search (LDAP_MATCHING_RULE_IN_CHAIN).
//
// A wrong password, an unknown or ambiguous user name, an empty password
// and a name that cannot be a user's all return an *OpError of kind
// ErrInvalidCredentials (an empty password is refused before anything is
// sent: servers accept it as an anonymous bind). A name that is no
// account is refused after a bind as a made-up account, so that it takes
// as long as a wrong password and the time does not tell which names
// exist. An account that may not
// sign in (disabled, expired, locked out) is ErrAccountRestricted, with the
// reason when the server gives one. A directory that cannot be reached is
// ErrConnection. When the account was found but refused (wrong password,
// restricted), the Account returned with the error carries its DN and
// names, without groups, so that an application can count failures by
// account whatever spelling of the name was typed.
func (c *Client) Authenticate(ctx context.Context, user, password string) (Account, error) {
	const op = "authenticate"
	refuse := func(why string) (Account, error) {
		return Account{}, &OpError{Op: op, Kind: ErrInvalidCredentials, Reason: why}
	}
	name, ok := accountName(user)
	if !ok {
		return refuse("not a user name")
	}
	if password == "" {
		return refuse("empty password")
	}
	domain, err := c.domainBase(ctx)
	if err != nil {
		return Account{}, err
	}
	base := c.cfg.UserBase
	if base == "" {
		base = domain
	}

	// Find the account with the Client's bind.
	esc := ldap.EscapeFilter(name)
	req := ldap.SearchRequest{
		BaseDN: base, Scope: ldap.ScopeWholeSubtree, DerefAliases: ldap.NeverDerefAliases, SizeLimit: 2,
		Filter:     "(&(sAMAccountType=" + normalUserAccount + ")(|(sAMAccountName=" + esc + ")(userPrincipalName=" + esc + ")))",
		Attributes: []string{"sAMAccountName", "userPrincipalName", "displayName"},
	}
	var found []*ldap.Entry
	var foundURL string
	err = c.pagedSearch(ctx, op, req, true, func(_ *ldap.Conn, url string, entries []*ldap.Entry) (bool, error) {
		found = append(found, entries...)
		foundURL = url
		return len(found) < 2, nil
	})
	why := ""
	if err != nil {
		var le *ldap.Error
		if !errors.As(err, &le) || le.ResultCode != ldap.LDAPResultSizeLimitExceeded {
			return Account{}, err
		}
		why = "user name names more than one account"
	} else if len(found) == 0 {
		why = "no such user"
	} else if len(found) > 1 {
		why = "user name names more than one account"
	}
	if why != "" {
		// Bind anyway, as an account that does not exist, so that a name
		// that is not an account takes as long to refuse as a wrong
		// password: the time must not tell which names exist.
		conn, _, err := c.bindAs(ctx, "CN=vmm-no-such-account-"+rand.Text()+","+domain, password, foundURL)
		if err == nil {
			conn.Close()
		}
		return refuse(why)
	}
	e := found[0]
	acct := Account{DN: e.DN, SAMAccountName: e.GetAttributeValue("sAMAccountName"),
		UPN: e.GetAttributeValue("userPrincipalName"), DisplayName: e.GetAttributeValue("displayName")}

	// Check the password by binding as the account.
	conn, url, err := c.bindAs(ctx, acct.DN, password, foundURL)
	if err != nil {
		if errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrAccountRestricted) {
			return acct, err // which account was refused, for rate limits by account
		}
		return Account{}, err
	}
	defer conn.Close()

	groups, err := c.accountGroups(ctx, conn, acct.DN, domain)
	if err != nil {
		if ctx.Err() != nil {
			return Account{}, ctx.Err()
		}
		return Account{}, classify(op, redactURL(url), err)
	}
	slices.SortFunc(groups, func(a, b *ldap.Entry) int {
		return strings.Compare(strings.ToLower(a.GetAttributeValue("sAMAccountName")), strings.ToLower(b.GetAttributeValue("sAMAccountName")))
	})
	for _, g := range groups {
		n := g.GetAttributeValue("sAMAccountName")
		if n == "" || len(acct.Groups) > 0 && strings.EqualFold(acct.Groups[len(acct.Groups)-1], n) {
			continue
		}
		acct.Groups = append(acct.Groups, n)
		acct.GroupDNs = append(acct.GroupDNs, g.DN)
	}
	return acct, nil
}

// bindAs opens a connection of its own bound as dn with password, first on
// the server at first (the one that found the account: replication may not
// have carried it elsewhere yet), then on the others.
func (c *Client) bindAs(ctx context.Context, dn, password, first string) (*ldap.Conn, string, error) {
	urls := c.cfg.URLs
	if first != "" {
		urls = append([]string{first}, slices.DeleteFunc(slices.Clone(urls), func(u string) bool { return u == first })...)
	}
	if c.userBinds != nil {
		c.userBinds.Add(1)
	}
	var conn *ldap.Conn
	var url string
	err := c.retry(ctx, "authenticate", func() error {
		var err error
		conn, url, err = c.dialAnyAs(ctx, SimpleBind{Name: dn, Password: password}, urls)
		if err != nil {
			var oe *OpError
			if errors.As(err, &oe) {
				oe.Op = "authenticate"
			}
		}
		return err
	})
	return conn, url, err
}

// accountName returns the name to look up for what a user typed, and false
// when it cannot be an account name.
func accountName(user string) (string, bool) {
	if i := strings.IndexByte(user, '\\'); i >= 0 && !strings.Contains(user, "@") {
		user = user[i+1:]
	}
	if user == "" || len(user) > maxUserName || strings.TrimSpace(user) != user {
		return "", false
	}
	for _, r := range user {
		if unicode.IsControl(r) || r == '\\' {
			return "", false
		}
	}
	return user, true
}

// domainBase returns the directory's default naming context (read once):
// the whole domain, where Authenticate looks for groups, and for accounts
// unless Config.UserBase says otherwise.
func (c *Client) domainBase(ctx context.Context) (string, error) {
	c.mu.Lock()
	nc := c.namingContext
	c.mu.Unlock()
	if nc != "" {
		return nc, nil
	}
	st, err := c.serverState(ctx)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.namingContext = st.namingContext
	c.mu.Unlock()
	return st.namingContext, nil
}

// sidsPerSearch bounds the objectSid terms of one group search's filter.
const sidsPerSearch = 100

// accountGroups returns the group entries (sAMAccountName, DN) of the
// account dn, read on conn, which is bound as the account.
func (c *Client) accountGroups(ctx context.Context, conn *ldap.Conn, dn, base string) ([]*ldap.Entry, error) {
	self, err := searchAll(ctx, conn, ldap.SearchRequest{
		BaseDN: dn, Scope: ldap.ScopeBaseObject, DerefAliases: ldap.NeverDerefAliases,
		Filter: "(objectClass=*)", Attributes: []string{"tokenGroups", "objectSid", "primaryGroupID"},
	})
	if err != nil {
		return nil, err
	}
	if len(self) != 1 {
		return nil, fmt.Errorf("reading %s as itself: %d entries", dn, len(self))
	}
	sids := self[0].GetRawAttributeValues("tokenGroups")
	if len(sids) > 0 && !c.noTokenGroups {
		return c.groupsBySID(ctx, conn, dn, base, sids)
	}
	groups, err := c.chainGroups(ctx, conn, dn, base)
	if err != nil {
		return nil, err
	}
	// The primary group (Domain Users) holds its members by their
	// primaryGroupID, not by member: its SID is the domain's (the
	// account's SID without its last part) and that ID.
	own := self[0].GetRawAttributeValue("objectSid")
	rid, perr := strconv.ParseUint(self[0].GetAttributeValue("primaryGroupID"), 10, 32)
	if _, err := FormatSID(own); err != nil || perr != nil || own[1] == 0 {
		return groups, nil
	}
	primary := slices.Clone(own)
	binary.LittleEndian.PutUint32(primary[len(primary)-4:], uint32(rid))
	pg, err := c.groupsBySID(ctx, conn, dn, base, [][]byte{primary})
	if err != nil {
		return nil, err
	}
	return append(groups, pg...), nil
}

// groupsBySID returns the group entries of the binary SIDs sids.
func (c *Client) groupsBySID(ctx context.Context, conn *ldap.Conn, dn, base string, sids [][]byte) ([]*ldap.Entry, error) {
	var groups []*ldap.Entry
	for chunk := range slices.Chunk(sids, sidsPerSearch) {
		var f strings.Builder
		f.WriteString("(&(objectClass=group)(|")
		for _, sid := range chunk {
			if _, err := FormatSID(sid); err != nil {
				return nil, fmt.Errorf("tokenGroups of %s: %w", dn, err)
			}
			f.WriteString("(objectSid=")
			for _, b := range sid {
				fmt.Fprintf(&f, "\\%02x", b)
			}
			f.WriteString(")")
		}
		f.WriteString("))")
		got, err := c.searchDomain(ctx, conn, ldap.SearchRequest{
			BaseDN: base, Scope: ldap.ScopeWholeSubtree, DerefAliases: ldap.NeverDerefAliases,
			Filter: f.String(), Attributes: []string{"sAMAccountName"},
		})
		if err != nil {
			return nil, err
		}
		groups = append(groups, got...)
	}
	return groups, nil
}

// chainGroups finds the groups that hold dn, directly or nested, with the
// in-chain matching rule.
func (c *Client) chainGroups(ctx context.Context, conn *ldap.Conn, dn, base string) ([]*ldap.Entry, error) {
	return c.searchDomain(ctx, conn, ldap.SearchRequest{
		BaseDN: base, Scope: ldap.ScopeWholeSubtree, DerefAliases: ldap.NeverDerefAliases,
		// Security groups only (groupType bit 0x80000000), as in
		// tokenGroups: distribution lists are often open for users to join.
		Filter:     "(&(objectClass=group)(groupType:1.2.840.113556.1.4.803:=2147483648)(member:1.2.840.113556.1.4.1941:=" + ldap.EscapeFilter(dn) + "))",
		Attributes: []string{"sAMAccountName"},
	})
}

// searchDomain runs a paged search on conn and collects every entry. It
// skips continuation references: a search from the domain's root gets
// references to the configuration and DNS partitions, which hold no users'
// groups.
func (c *Client) searchDomain(ctx context.Context, conn *ldap.Conn, req ldap.SearchRequest) ([]*ldap.Entry, error) {
	var out []*ldap.Entry
	var cookie []byte
	for {
		p, err := searchPage(ctx, conn, req, c.cfg.PageSize, cookie, true)
		if err != nil {
			return nil, err
		}
		out = append(out, p.entries...)
		if len(p.cookie) == 0 {
			return out, nil
		}
		cookie = p.cookie
	}
}

// FormatSID returns the string form ("S-1-5-21-...") of a binary security
// identifier as AD stores it in objectSid and tokenGroups.
func FormatSID(b []byte) (string, error) {
	// revision (1), sub-authority count (1), identifier authority (6,
	// big-endian), sub-authorities (4 each, little-endian).
	if len(b) < 8 || b[0] != 1 || b[1] > 15 || len(b) != 8+4*int(b[1]) {
		return "", fmt.Errorf("discovery: malformed SID (%d bytes)", len(b))
	}
	var auth uint64
	for _, x := range b[2:8] {
		auth = auth<<8 | uint64(x)
	}
	var s strings.Builder
	s.WriteString("S-1-")
	s.WriteString(strconv.FormatUint(auth, 10))
	for i := range int(b[1]) {
		s.WriteString("-")
		s.WriteString(strconv.FormatUint(uint64(binary.LittleEndian.Uint32(b[8+4*i:])), 10))
	}
	return s.String(), nil
}
