package discovery

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/go-ldap/ldap/v3"
	krberror "github.com/jcmturner/gokrb5/v8/iana/errorcode"
	"github.com/jcmturner/gokrb5/v8/messages"
)

// Kinds of failure, reached with errors.Is through an [*OpError].
var (
	// ErrInvalidCredentials: the server refused the bind name or password
	// (LDAP result 49, Kerberos pre-authentication failed or unknown
	// principal). Never retried.
	ErrInvalidCredentials = errors.New("discovery: invalid credentials")
	// ErrAccountRestricted: the credentials are right but the account may not
	// sign in: disabled, expired, locked out, or its password expired or must
	// change. OpError.Reason says which when the server tells. Never retried.
	ErrAccountRestricted = errors.New("discovery: account may not sign in")
	// ErrTLS: the TLS handshake failed, for example an untrusted certificate
	// or a host name that the certificate does not name.
	ErrTLS = errors.New("discovery: TLS failed")
	// ErrStartTLS: the server refused StartTLS on an ldap:// URL. Discovery
	// never goes on in plain text.
	ErrStartTLS = errors.New("discovery: server refused StartTLS")
	// ErrNoSuchOU: the query's OU (the search base) does not exist.
	ErrNoSuchOU = errors.New("discovery: no such OU")
	// ErrReferral: the server referred the search elsewhere, or returned an
	// entry from outside the search base. Referrals are not chased.
	ErrReferral = errors.New("discovery: server returned a referral")
	// ErrConnection: the connection failed or was lost; the operation may be
	// retried.
	ErrConnection = errors.New("discovery: connection failed")
	// ErrQuery: a Query is not valid (OU, scope or filter).
	ErrQuery = errors.New("discovery: invalid query")
	// ErrConfig: a Config is not valid.
	ErrConfig = errors.New("discovery: invalid config")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("discovery: client closed")
)

// An OpError reports a failed operation against a directory server.
type OpError struct {
	Op     string // "dial", "starttls", "bind", "search", "changes"
	URL    string // the server's URL; never carries credentials
	Kind   error  // one of the Err* values of this package, or nil
	Reason string // detail the server gave, such as "account locked"; may be empty
	Err    error  // the underlying error: *ldap.Error, a TLS or network error, ...
}

func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString("discovery: ")
	b.WriteString(e.Op)
	if e.URL != "" {
		b.WriteString(" ")
		b.WriteString(e.URL)
	}
	if e.Kind != nil {
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.Kind.Error(), "discovery: "))
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " (%s)", e.Reason)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the kind and the underlying error, so that both errors.Is
// with a kind and errors.As with the dependency's error type work.
func (e *OpError) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// adReasons maps the "data" code in an AD bind diagnostic to a reason. 52e
// (bad password) and 525 (no such user) are plain invalid credentials.
var adReasons = map[string]string{
	"530": "not permitted to sign in at this time",
	"531": "not permitted to sign in from this workstation",
	"532": "password expired",
	"533": "account disabled",
	"701": "account expired",
	"773": "password must be changed",
	"775": "account locked",
}

// classify turns an error from go-ldap, crypto/tls, net or gokrb5 into an
// *OpError with a kind.
func classify(op, url string, err error) *OpError {
	if err == nil {
		return nil
	}
	var oe *OpError
	if errors.As(err, &oe) {
		return oe
	}
	e := &OpError{Op: op, URL: url, Err: err}
	var le *ldap.Error
	var krbErr messages.KRBError
	var certErr *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var uaErr x509.UnknownAuthorityError
	var ciErr x509.CertificateInvalidError
	var recErr tls.RecordHeaderError
	var alert tls.AlertError
	switch {
	case errors.As(err, &certErr), errors.As(err, &hostErr), errors.As(err, &uaErr),
		errors.As(err, &ciErr), errors.As(err, &recErr), errors.As(err, &alert):
		e.Kind = ErrTLS
	case errors.As(err, &krbErr):
		switch krbErr.ErrorCode {
		case krberror.KDC_ERR_PREAUTH_FAILED, krberror.KDC_ERR_C_PRINCIPAL_UNKNOWN, krberror.KRB_AP_ERR_BAD_INTEGRITY:
			e.Kind = ErrInvalidCredentials
		case krberror.KDC_ERR_CLIENT_REVOKED:
			e.Kind, e.Reason = ErrAccountRestricted, "account disabled, expired or locked"
		case krberror.KDC_ERR_KEY_EXPIRED:
			e.Kind, e.Reason = ErrAccountRestricted, "password expired"
		}
	case errors.As(err, &le):
		switch le.ResultCode {
		case ldap.LDAPResultInvalidCredentials:
			e.Kind = ErrInvalidCredentials
			msg := le.Err.Error()
			for code, reason := range adReasons {
				if strings.Contains(msg, "data "+code+",") || strings.HasSuffix(msg, "data "+code) {
					e.Kind, e.Reason = ErrAccountRestricted, reason
				}
			}
		case ldap.LDAPResultNoSuchObject:
			e.Kind = ErrNoSuchOU
		case ldap.LDAPResultReferral:
			e.Kind = ErrReferral
		case ldap.ErrorNetwork, ldap.LDAPResultServerDown, ldap.LDAPResultConnectError,
			ldap.LDAPResultBusy, ldap.LDAPResultUnavailable, ldap.LDAPResultTimeout:
			e.Kind = ErrConnection
		case ldap.LDAPResultFilterError, ldap.LDAPResultInvalidDNSyntax:
			e.Kind = ErrQuery
		}
	case strings.Contains(err.Error(), "KDC_ERR_PREAUTH_FAILED"), strings.Contains(err.Error(), "KDC_ERR_C_PRINCIPAL_UNKNOWN"):
		// gokrb5 often flattens the KRBError into its message.
		e.Kind = ErrInvalidCredentials
	case strings.Contains(err.Error(), "KDC_ERR_CLIENT_REVOKED"):
		e.Kind, e.Reason = ErrAccountRestricted, "account disabled, expired or locked"
	case strings.Contains(err.Error(), "KDC_ERR_KEY_EXPIRED"):
		e.Kind, e.Reason = ErrAccountRestricted, "password expired"
	case strings.Contains(err.Error(), "Networking_Error"):
		e.Kind = ErrConnection
	default:
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
			e.Kind = ErrConnection
		}
	}
	if op == "starttls" && e.Kind == nil {
		e.Kind = ErrStartTLS
	}
	return e
}

// transient reports whether err is worth trying again, here or on the next
// server.
func transient(err error) bool {
	return errors.Is(err, ErrConnection)
}
