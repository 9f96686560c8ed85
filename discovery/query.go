package discovery

import (
	"fmt"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// A Scope says how deep below the OU a query looks.
type Scope int

const (
	// Subtree looks at the OU and every OU and container below it.
	Subtree Scope = iota
	// OneLevel looks only at the OU's direct children.
	OneLevel
)

// MaxFilterLength bounds Query.Filter, in bytes.
const MaxFilterLength = 4096

// A Query says which computer accounts are hosts.
type Query struct {
	// OU is the distinguished name of the organizational unit (or
	// container) to search, with special characters escaped as in RFC 4514:
	// `OU=Staging\, Test,DC=example,DC=com`. Use OUDN to build one from
	// names. Required.
	OU string
	// Scope is Subtree (the default) or OneLevel.
	Scope Scope
	// IncludeDisabled also yields disabled accounts (Host.Enabled false).
	IncludeDisabled bool
	// Filter, when set, is an LDAP filter (RFC 4515) that hosts must also
	// match, such as "(operatingSystem=Windows Server 2008*)". It must be a
	// single parenthesized filter; values taken from users must be escaped
	// with EscapeFilter. It can only narrow the query: hosts are always
	// computer accounts below OU.
	Filter string
	// Resolve looks up each host's dNSHostName with Config.Resolver and
	// reports the result in Host.Addrs and Host.ResolveErr.
	Resolve bool
}

// EscapeFilter escapes a value for use inside an LDAP filter, so that
// "*)(objectClass=*" matches only that literal text.
func EscapeFilter(value string) string { return ldap.EscapeFilter(value) }

// OUDN returns the DN of the OU named by path below base, outermost first:
// OUDN("DC=example,DC=com", "VirtualHosts", "Staging, Test") is
// `OU=Staging\, Test,OU=VirtualHosts,DC=example,DC=com`. Names are escaped as
// RFC 4514 requires; base is used as given. Directory names are UTF-8: bytes
// that are not valid UTF-8 become U+FFFD.
func OUDN(base string, path ...string) string {
	var b strings.Builder
	for i := len(path) - 1; i >= 0; i-- {
		b.WriteString("OU=")
		b.WriteString(ldap.EscapeDN(strings.ToValidUTF8(path[i], "\uFFFD")))
		b.WriteString(",")
	}
	b.WriteString(base)
	return b.String()
}

// CheckFilter reports whether f is a well-formed single LDAP filter, as
// Query.Filter must be. The error wraps ErrQuery.
func CheckFilter(f string) error {
	if len(f) > MaxFilterLength {
		return fmt.Errorf("%w: filter longer than %d bytes", ErrQuery, MaxFilterLength)
	}
	if !strings.HasPrefix(f, "(") || !strings.HasSuffix(f, ")") {
		return fmt.Errorf("%w: filter must be enclosed in parentheses", ErrQuery)
	}
	if strings.ContainsRune(f, 0) {
		return fmt.Errorf("%w: filter holds a NUL byte; escape values with EscapeFilter", ErrQuery)
	}
	if _, err := ldap.CompileFilter(f); err != nil {
		return fmt.Errorf("%w: filter: %w", ErrQuery, err)
	}
	return nil
}

// ouDN parses and checks the query's OU.
func (q *Query) ouDN() (*ldap.DN, error) {
	if strings.TrimSpace(q.OU) == "" {
		return nil, fmt.Errorf("%w: no OU", ErrQuery)
	}
	dn, err := ldap.ParseDN(q.OU)
	if err != nil {
		return nil, fmt.Errorf("%w: OU %q: %w", ErrQuery, q.OU, err)
	}
	if len(dn.RDNs) == 0 {
		return nil, fmt.Errorf("%w: empty OU", ErrQuery)
	}
	return dn, nil
}

// check validates q and returns its parsed OU and the complete filter.
func (q *Query) check() (*ldap.DN, string, error) {
	dn, err := q.ouDN()
	if err != nil {
		return nil, "", err
	}
	if q.Scope != Subtree && q.Scope != OneLevel {
		return nil, "", fmt.Errorf("%w: unknown scope %d", ErrQuery, q.Scope)
	}
	if q.Filter != "" {
		if err := CheckFilter(q.Filter); err != nil {
			return nil, "", err
		}
	}
	return dn, q.filter(""), nil
}

// filter returns the search filter, with extra (already well-formed) ANDed.
func (q *Query) filter(extra string) string {
	var b strings.Builder
	b.WriteString("(&(objectCategory=computer)(objectClass=computer)")
	if !q.IncludeDisabled {
		b.WriteString("(!(userAccountControl:1.2.840.113556.1.4.803:=2))")
	}
	b.WriteString(q.Filter)
	b.WriteString(extra)
	b.WriteString(")")
	return b.String()
}

func (q *Query) ldapScope() int {
	if q.Scope == OneLevel {
		return ldap.ScopeSingleLevel
	}
	return ldap.ScopeWholeSubtree
}
