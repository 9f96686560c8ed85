package discovery

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// A Role is what a host is for, as told by its SPNs and operating system.
type Role int

const (
	RoleOther         Role = iota // neither of the below, or not known
	RoleHyperV                    // a Hyper-V host
	RoleVirtualServer             // a Virtual Server 2005 host
)

func (r Role) String() string {
	switch r {
	case RoleHyperV:
		return "Hyper-V"
	case RoleVirtualServer:
		return "Virtual Server"
	default:
		return "other"
	}
}

// MarshalText writes the role as its String.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// A Host is a computer account found in the directory.
type Host struct {
	DN          string // distinguished name
	Name        string // the account's name (cn), such as "HV-0042"
	DNSHostName string // fully qualified DNS name; empty for a pre-staged account
	// SAMAccountName is the pre-Windows 2000 name, such as "HV-0042$".
	SAMAccountName string

	OperatingSystem            string // "Windows Server 2008 R2 Datacenter"
	OperatingSystemVersion     string // "6.1 (7601)"
	OperatingSystemServicePack string // "Service Pack 1"

	Description string
	Location    string
	ManagedBy   string   // DN of the account that manages the host, or empty
	SPNs        []string // servicePrincipalName values, complete even when range retrieval cut them

	GUID        string    // objectGUID as a UUID string, as Windows shows it
	WhenChanged time.Time // UTC
	USNChanged  int64     // uSNChanged on the server that answered
	Enabled     bool      // false when userAccountControl has ACCOUNTDISABLE
	Role        Role

	// Group is the path of OUs and containers from the query's OU down to
	// the host, outermost first, by their names: ["HyperV", "Redmond",
	// "Rack01"]. It is empty for a host directly in the query's OU.
	Group []string

	// Addrs and ResolveErr are set when Query.Resolve is: the addresses
	// DNSHostName resolved to, or why it did not resolve (ErrNoDNSName
	// for a host without one).
	Addrs      []netip.Addr
	ResolveErr error
}

// GroupPath returns Group joined by "/", with a "/" or "\" inside a name
// escaped by a "\".
func (h *Host) GroupPath() string {
	parts := make([]string, len(h.Group))
	for i, g := range h.Group {
		parts[i] = strings.NewReplacer(`\`, `\\`, `/`, `\/`).Replace(g)
	}
	return strings.Join(parts, "/")
}

// hostAttributes are the attributes a search asks for.
var hostAttributes = []string{
	"cn", "dNSHostName", "sAMAccountName", "operatingSystem", "operatingSystemVersion",
	"operatingSystemServicePack", "description", "location", "managedBy",
	"servicePrincipalName", "objectGUID", "whenChanged", "uSNChanged", "userAccountControl",
}

const uacAccountDisable = 0x2

// SPN service classes that tell a host's role.
var (
	hyperVServices = []string{
		"Microsoft Virtual System Migration Service/",
		"Microsoft Virtual Console Service/",
		"Hyper-V Replica Service/",
	}
	virtualServerServices = []string{"Microsoft Virtual Server/"}
)

// deriveRole tells a host's role from its SPNs, or from its OS name when it
// has none that tell.
func deriveRole(spns []string, os string) Role {
	for _, s := range spns {
		for _, p := range hyperVServices {
			if len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) {
				return RoleHyperV
			}
		}
		for _, p := range virtualServerServices {
			if len(s) >= len(p) && strings.EqualFold(s[:len(p)], p) {
				return RoleVirtualServer
			}
		}
	}
	if strings.Contains(strings.ToLower(os), "hyper-v server") {
		return RoleHyperV
	}
	return RoleOther
}

// formatGUID formats a 16-byte objectGUID the way Windows shows it: the
// first three fields are little-endian in the directory.
func formatGUID(b []byte) (string, error) {
	if len(b) != 16 {
		return "", fmt.Errorf("objectGUID of %d bytes, want 16", len(b))
	}
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6],
		b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]), nil
}

// parseGeneralizedTime parses AD's "20240131120000.0Z".
func parseGeneralizedTime(s string) (time.Time, error) {
	for _, layout := range []string{"20060102150405.0Z", "20060102150405Z", "20060102150405.0Z0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("bad time %q", s)
}

// decodeHost turns an entry into a Host; base is the query's OU.
func decodeHost(e *ldap.Entry, base *ldap.DN) (Host, error) {
	h := Host{
		DN:                         e.DN,
		Name:                       e.GetAttributeValue("cn"),
		DNSHostName:                e.GetAttributeValue("dNSHostName"),
		SAMAccountName:             e.GetAttributeValue("sAMAccountName"),
		OperatingSystem:            e.GetAttributeValue("operatingSystem"),
		OperatingSystemVersion:     e.GetAttributeValue("operatingSystemVersion"),
		OperatingSystemServicePack: e.GetAttributeValue("operatingSystemServicePack"),
		Description:                e.GetAttributeValue("description"),
		Location:                   e.GetAttributeValue("location"),
		ManagedBy:                  e.GetAttributeValue("managedBy"),
		SPNs:                       e.GetAttributeValues("servicePrincipalName"),
	}
	if raw := e.GetRawAttributeValue("objectGUID"); raw != nil {
		g, err := formatGUID(raw)
		if err != nil {
			return h, fmt.Errorf("%s: %w", e.DN, err)
		}
		h.GUID = g
	}
	if s := e.GetAttributeValue("whenChanged"); s != "" {
		t, err := parseGeneralizedTime(s)
		if err != nil {
			return h, fmt.Errorf("%s: whenChanged: %w", e.DN, err)
		}
		h.WhenChanged = t
	}
	if s := e.GetAttributeValue("uSNChanged"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return h, fmt.Errorf("%s: uSNChanged: %w", e.DN, err)
		}
		h.USNChanged = n
	}
	uac, err := strconv.ParseInt(e.GetAttributeValue("userAccountControl"), 10, 64)
	if err != nil {
		return h, fmt.Errorf("%s: userAccountControl: %w", e.DN, err)
	}
	h.Enabled = uac&uacAccountDisable == 0
	h.Role = deriveRole(h.SPNs, h.OperatingSystem)
	if h.Name == "" {
		h.Name = strings.TrimSuffix(h.SAMAccountName, "$")
	}
	if base != nil {
		g, err := groupOf(e.DN, base)
		if err != nil {
			return h, err
		}
		h.Group = g
	}
	return h, nil
}

// groupOf returns the names of the RDNs between base and the entry dn (not
// counting the entry's own), outermost first. It fails when dn is not below
// base: a server must never hand back entries from another place.
func groupOf(dn string, base *ldap.DN) ([]string, error) {
	d, err := ldap.ParseDN(dn)
	if err != nil {
		return nil, fmt.Errorf("%w: server returned a bad DN %q: %w", ErrReferral, dn, err)
	}
	if !base.AncestorOfFold(d) {
		return nil, fmt.Errorf("%w: server returned %q, which is not below %q", ErrReferral, dn, base.String())
	}
	n := len(d.RDNs) - len(base.RDNs) - 1
	g := make([]string, 0, n)
	for i := n; i >= 1; i-- {
		rdn := d.RDNs[i]
		if len(rdn.Attributes) > 0 {
			g = append(g, rdn.Attributes[0].Value)
		}
	}
	return g, nil
}
