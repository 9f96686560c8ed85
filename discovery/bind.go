package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/go-ldap/ldap/v3"
	"github.com/go-ldap/ldap/v3/gssapi"
	"github.com/jcmturner/gokrb5/v8/client"
)

// A Bind signs in to the directory after the connection is secured: a
// SimpleBind or a KerberosBind. Other implementations are not possible.
type Bind interface {
	check() error
	bind(ctx context.Context, conn *ldap.Conn, serverName string) error
}

// A SimpleBind signs in with a name and a password (LDAP simple bind), only
// ever over TLS. Name is a DN ("CN=svc-vmm,OU=Service,DC=example,DC=com") or
// a user principal name ("svc-vmm@example.com"). Its String, GoString and
// LogValue methods leave the password out.
type SimpleBind struct {
	Name     string
	Password string
}

var _ Bind = SimpleBind{}

func (b SimpleBind) check() error {
	if b.Name == "" || b.Password == "" {
		// An empty password would make an unauthenticated bind, which
		// servers accept and which reads nothing.
		return fmt.Errorf("%w: SimpleBind needs a name and a password", ErrConfig)
	}
	return nil
}

func (b SimpleBind) bind(ctx context.Context, conn *ldap.Conn, _ string) error {
	_, err := conn.SimpleBind(&ldap.SimpleBindRequest{Username: b.Name, Password: b.Password})
	return err
}

// String returns the bind name with the password left out.
func (b SimpleBind) String() string { return fmt.Sprintf("simple bind as %s", b.Name) }

// GoString is String, so that %#v leaves the password out too.
func (b SimpleBind) GoString() string { return b.String() }

// LogValue leaves the password out of structured logs.
func (b SimpleBind) LogValue() slog.Value {
	return slog.GroupValue(slog.String("method", "simple"), slog.String("name", b.Name))
}

// MarshalJSON leaves the password out.
func (b SimpleBind) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct{ Method, Name string }{"simple", b.Name})
}

// A KerberosBind signs in with Kerberos (SASL GSSAPI), from a password or a
// keytab. Its String, GoString and LogValue methods leave the password out.
type KerberosBind struct {
	// Username is the principal's name without realm ("svc-vmm").
	Username string
	// Realm is the Kerberos realm ("EXAMPLE.COM"); empty means the
	// default_realm of the krb5.conf.
	Realm string
	// Password or KeytabFile (a keytab holding the principal's keys): one
	// is required.
	Password   string
	KeytabFile string
	// Krb5Config names the krb5.conf that locates the KDCs; empty means
	// $KRB5_CONFIG, or else /etc/krb5.conf.
	Krb5Config string
	// SPN is the directory server's service principal name; empty means
	// "ldap/" followed by the server name (Config.ServerName, or the host of
	// the URL in use), which must then be the server's DNS name.
	SPN string
}

var _ Bind = KerberosBind{}

func (b KerberosBind) check() error {
	if b.Username == "" {
		return fmt.Errorf("%w: KerberosBind needs a Username", ErrConfig)
	}
	if (b.Password == "") == (b.KeytabFile == "") {
		return fmt.Errorf("%w: KerberosBind needs a Password or a KeytabFile, not both", ErrConfig)
	}
	return nil
}

func (b KerberosBind) krb5Config() string {
	if b.Krb5Config != "" {
		return b.Krb5Config
	}
	if p := os.Getenv("KRB5_CONFIG"); p != "" {
		return strings.Split(p, ":")[0]
	}
	return "/etc/krb5.conf"
}

func (b KerberosBind) bind(ctx context.Context, conn *ldap.Conn, serverName string) error {
	var (
		cl  *gssapi.Client
		err error
	)
	// Active Directory does not do FAST pre-authentication.
	settings := []func(*client.Settings){client.DisablePAFXFAST(true)}
	if b.KeytabFile != "" {
		cl, err = gssapi.NewClientWithKeytab(b.Username, b.Realm, b.KeytabFile, b.krb5Config(), settings...)
	} else {
		cl, err = gssapi.NewClientWithPassword(b.Username, b.Realm, b.Password, b.krb5Config(), settings...)
	}
	if err != nil {
		return fmt.Errorf("%w: Kerberos: %w", ErrConfig, err)
	}
	defer cl.Close()
	if err := cl.Login(); err != nil {
		return err
	}
	spn := b.SPN
	if spn == "" {
		spn = "ldap/" + serverName
	}
	return conn.GSSAPIBind(cl, spn, "")
}

// String returns the principal with the password left out.
func (b KerberosBind) String() string {
	how := "password"
	if b.KeytabFile != "" {
		how = "keytab " + b.KeytabFile
	}
	return fmt.Sprintf("Kerberos bind as %s@%s with %s", b.Username, b.Realm, how)
}

// GoString is String, so that %#v leaves the password out too.
func (b KerberosBind) GoString() string { return b.String() }

// LogValue leaves the password out of structured logs.
func (b KerberosBind) LogValue() slog.Value {
	return slog.GroupValue(slog.String("method", "kerberos"), slog.String("user", b.Username),
		slog.String("realm", b.Realm), slog.String("spn", b.SPN))
}

// MarshalJSON leaves the password out.
func (b KerberosBind) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct{ Method, Username, Realm, KeytabFile, Krb5Config, SPN string }{
		"kerberos", b.Username, b.Realm, b.KeytabFile, b.Krb5Config, b.SPN})
}
