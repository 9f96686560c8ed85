package discovery

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// fakeServer is a small in-process LDAP server for what Samba cannot show:
// a MaxPageSize smaller than asked, range retrieval, referrals, a connection
// closed mid-page, a refused StartTLS. It serves a fixed list of entries
// below fakeOU and accepts the simple bind fakeUser/fakePassword.
type fakeServer struct {
	t    *testing.T
	ln   net.Listener
	URL  string
	Pool *x509.CertPool

	maxPage      int  // entries a page at most (AD's MaxPageSize)
	rangeSize    int  // values of servicePrincipalName per range; 0: no ranges
	refuseTLS    bool // plain listener that refuses StartTLS
	referral     bool // answer searches with result code 10
	reference    bool // send a continuation reference in the first page
	closeOnPage  int  // close the connection after 1 entry of this page (1-based); 0: never
	bindDiag     string
	entries      []*ldap.Entry
	mu           sync.Mutex
	binds        int
	searchPages  int
	abandonedPgs int
}

const (
	fakeOU       = "OU=Hosts,DC=fake,DC=test"
	fakeUser     = "CN=reader,DC=fake,DC=test"
	fakePassword = "fake-Secret-123"
)

func newFakeServer(t *testing.T, configure func(*fakeServer)) *fakeServer {
	t.Helper()
	f := &fakeServer{t: t, maxPage: 1000}
	for i := range 10 {
		name := fmt.Sprintf("FAKE-%02d", i)
		spns := []string{"HOST/" + name}
		for j := range 7 {
			spns = append(spns, fmt.Sprintf("Microsoft Virtual Console Service/%s-%d", name, j))
		}
		guid := make([]byte, 16)
		guid[0], guid[15] = byte(i), 0xab
		f.entries = append(f.entries, &ldap.Entry{
			DN: "CN=" + name + ",OU=Rack," + fakeOU,
			Attributes: []*ldap.EntryAttribute{
				{Name: "cn", Values: []string{name}},
				{Name: "dNSHostName", Values: []string{strings.ToLower(name) + ".fake.test"}},
				{Name: "userAccountControl", Values: []string{"4096"}},
				{Name: "objectGUID", Values: []string{string(guid)}},
				{Name: "uSNChanged", Values: []string{strconv.Itoa(100 + i)}},
				{Name: "whenChanged", Values: []string{"20240131120000.0Z"}},
				{Name: "servicePrincipalName", Values: spns},
			},
		})
	}
	if configure != nil {
		configure(f)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if f.refuseTLS {
		f.URL = "ldap://" + ln.Addr().String()
	} else {
		cert, pool := testCert(t)
		f.Pool = pool
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
		f.URL = "ldaps://" + ln.Addr().String()
	}
	f.ln = ln
	go f.serve()
	t.Cleanup(func() { ln.Close() })
	return f
}

// testCert makes a self-signed certificate for 127.0.0.1 and "fake.test".
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"fake.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func (f *fakeServer) config() Config {
	return Config{URLs: []string{f.URL}, RootCAs: f.Pool, Bind: SimpleBind{Name: fakeUser, Password: fakePassword},
		Timeout: 5 * time.Second, MaxRetries: -1}
}

func (f *fakeServer) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.handle(c)
	}
}

func envelope(id int64, op *ber.Packet, controls ...ldap.Control) *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Response")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "MessageID"))
	p.AppendChild(op)
	if len(controls) > 0 {
		cs := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		for _, c := range controls {
			cs.AppendChild(c.Encode())
		}
		p.AppendChild(cs)
	}
	return p
}

func result(tag ber.Tag, code int, diag string) *ber.Packet {
	r := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tag, nil, "Result")
	r.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, code, "resultCode"))
	r.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	r.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, diag, "diagnosticMessage"))
	return r
}

func entryPacket(dn string, attrs []*ldap.EntryAttribute) *ber.Packet {
	e := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultEntry, nil, "Entry")
	e.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "DN"))
	list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	for _, a := range attrs {
		s := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attribute")
		s.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a.Name, "type"))
		set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "vals")
		for _, v := range a.Values {
			set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, "val"))
		}
		s.AppendChild(set)
		list.AppendChild(s)
	}
	e.AppendChild(list)
	return e
}

func (f *fakeServer) handle(c net.Conn) {
	defer c.Close()
	send := func(p *ber.Packet) bool {
		_, err := c.Write(p.Bytes())
		return err == nil
	}
	for {
		p, err := ber.ReadPacket(c)
		if err != nil || len(p.Children) < 2 {
			return
		}
		id, _ := p.Children[0].Value.(int64)
		op := p.Children[1]
		switch op.Tag {
		case ldap.ApplicationBindRequest:
			f.mu.Lock()
			f.binds++
			f.mu.Unlock()
			name, _ := op.Children[1].Value.(string)
			pw := op.Children[2].Data.String()
			code, diag := 0, ""
			if name != fakeUser || pw != fakePassword {
				code, diag = 49, "80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data 52e, v4563"
			} else if f.bindDiag != "" {
				code, diag = 49, f.bindDiag
			}
			if !send(envelope(id, result(ldap.ApplicationBindResponse, code, diag))) {
				return
			}
		case ldap.ApplicationExtendedRequest:
			// StartTLS on the plain listener: refused.
			if !send(envelope(id, result(ldap.ApplicationExtendedResponse, ldap.LDAPResultUnavailable, "StartTLS not offered"))) {
				return
			}
		case ldap.ApplicationUnbindRequest:
			return
		case ldap.ApplicationSearchRequest:
			if !f.search(c, id, p, send) {
				return
			}
		}
	}
}

// search answers one search request; false means the connection is done.
func (f *fakeServer) search(c net.Conn, id int64, p *ber.Packet, send func(*ber.Packet) bool) bool {
	op := p.Children[1]
	base, _ := op.Children[0].Value.(string)
	var attrs []string
	for _, a := range op.Children[7].Children {
		s, _ := a.Value.(string)
		attrs = append(attrs, s)
	}
	var paging *ldap.ControlPaging
	if len(p.Children) > 2 {
		for _, cp := range p.Children[2].Children {
			if ctl, err := ldap.DecodeControl(cp); err == nil {
				if pc, ok := ctl.(*ldap.ControlPaging); ok {
					paging = pc
				}
			}
		}
	}
	if f.referral {
		return send(envelope(id, result(ldap.ApplicationSearchResultDone, ldap.LDAPResultReferral, "referral to ldap://elsewhere.test/"+base)))
	}
	// A base search: range retrieval of one entry.
	if scope, _ := op.Children[1].Value.(int64); scope == ldap.ScopeBaseObject {
		for _, e := range f.entries {
			if !strings.EqualFold(e.DN, base) {
				continue
			}
			var out []*ldap.EntryAttribute
			for _, a := range attrs {
				if m := rangeAttr.FindStringSubmatch(a); m != nil {
					start, _ := strconv.Atoi(m[2])
					out = append(out, f.cut(e.GetAttributeValues(m[1]), m[1], start))
				}
			}
			if !send(envelope(id, entryPacket(e.DN, out))) {
				return false
			}
		}
		return send(envelope(id, result(ldap.ApplicationSearchResultDone, 0, "")))
	}
	if !strings.EqualFold(base, fakeOU) {
		return send(envelope(id, result(ldap.ApplicationSearchResultDone, ldap.LDAPResultNoSuchObject, "no such object")))
	}
	start := 0
	if paging != nil && len(paging.Cookie) > 0 {
		start, _ = strconv.Atoi(string(paging.Cookie))
	}
	if paging != nil && paging.PagingSize == 0 {
		f.mu.Lock()
		f.abandonedPgs++
		f.mu.Unlock()
		return send(envelope(id, result(ldap.ApplicationSearchResultDone, 0, "")))
	}
	size := len(f.entries)
	if paging != nil {
		size = int(paging.PagingSize)
	}
	size = min(size, f.maxPage)
	f.mu.Lock()
	f.searchPages++
	pageNo := f.searchPages
	f.mu.Unlock()
	if f.reference && start == 0 {
		ref := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultReference, nil, "Reference")
		ref.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "ldap://other.fake.test/DC=other", "URI"))
		if !send(envelope(id, ref)) {
			return false
		}
	}
	end := min(start+size, len(f.entries))
	for i, e := range f.entries[start:end] {
		if f.closeOnPage == pageNo && i == 1 {
			return false
		}
		var out []*ldap.EntryAttribute
		for _, a := range e.Attributes {
			if a.Name == "servicePrincipalName" && f.rangeSize > 0 && len(a.Values) > f.rangeSize {
				out = append(out, f.cut(a.Values, a.Name, 0))
				continue
			}
			out = append(out, a)
		}
		if !send(envelope(id, entryPacket(e.DN, out))) {
			return false
		}
	}
	cookie := ""
	if end < len(f.entries) {
		cookie = strconv.Itoa(end)
	}
	pc := ldap.NewControlPaging(0)
	pc.SetCookie([]byte(cookie))
	return send(envelope(id, result(ldap.ApplicationSearchResultDone, 0, ""), pc))
}

// cut returns values from start, at most rangeSize of them, named as AD
// names a range ("name;range=3-5", or "name;range=6-*" for the last).
func (f *fakeServer) cut(values []string, name string, start int) *ldap.EntryAttribute {
	end := min(start+f.rangeSize, len(values))
	last := strconv.Itoa(end - 1)
	if end == len(values) {
		last = "*"
	}
	return &ldap.EntryAttribute{Name: fmt.Sprintf("%s;range=%d-%s", name, start, last), Values: values[start:end]}
}
