// Command discovery lists the virtualization hosts that Active Directory
// holds below an OU: the enabled computer accounts (and the disabled ones
// with -include-disabled), as a table or, with -json, one JSON object per
// line.
//
//	go run ./examples/discovery -url ldaps://dc1.example.com -ou 'OU=Hosts,DC=example,DC=com' \
//	    -bind-upn svc-vmm@example.com [-ca-cert ca.pem] [-tls-server-name dc1.example.com] \
//	    [-kerberos] [-krb5-config /etc/krb5.conf] [-include-disabled] [-json]
//
// Each flag defaults to an environment variable: VMM_LDAP_URL (several
// URLs separated by commas are tried in order), VMM_HOSTS_OU, VMM_BIND_DN
// or VMM_BIND_UPN, VMM_BIND_PASSWORD, VMM_CA_CERT, VMM_TLS_SERVER_NAME and
// VMM_KRB5_CONFIG. The password is read only from VMM_BIND_PASSWORD, so
// that it does not show in the process list.
//
// With -kerberos (or when VMM_KRB5_CONFIG is set and -kerberos is not
// false), it binds with Kerberos as the user of -bind-upn (user@REALM),
// with the password; otherwise with a simple bind.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"

	"github.com/vmmkit/vmmkit/discovery"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "discovery:", err)
		stop()
		os.Exit(1)
	}
}

// jsonHost is one line of -json output.
type jsonHost struct {
	DN              string   `json:"dn"`
	Name            string   `json:"name"`
	DNSHostName     string   `json:"dnsHostName"`
	OperatingSystem string   `json:"operatingSystem,omitempty"`
	Version         string   `json:"operatingSystemVersion,omitempty"`
	Role            string   `json:"role"`
	Group           string   `json:"group"`
	Enabled         bool     `json:"enabled"`
	GUID            string   `json:"objectGUID"`
	SPNs            []string `json:"servicePrincipalName,omitempty"`
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("discovery", flag.ContinueOnError)
	url := fs.String("url", getenv("VMM_LDAP_URL"), "server URL(s), ldaps:// or ldap:// (StartTLS), comma-separated (VMM_LDAP_URL)")
	ou := fs.String("ou", getenv("VMM_HOSTS_OU"), "DN of the OU holding the hosts (VMM_HOSTS_OU)")
	bindDN := fs.String("bind-dn", getenv("VMM_BIND_DN"), "DN to bind as (VMM_BIND_DN)")
	bindUPN := fs.String("bind-upn", getenv("VMM_BIND_UPN"), "user principal name to bind as (VMM_BIND_UPN)")
	caCert := fs.String("ca-cert", getenv("VMM_CA_CERT"), "PEM file of CAs to trust instead of the system's (VMM_CA_CERT)")
	serverName := fs.String("tls-server-name", getenv("VMM_TLS_SERVER_NAME"), "name the server certificate must carry (VMM_TLS_SERVER_NAME)")
	krb5 := fs.String("krb5-config", getenv("VMM_KRB5_CONFIG"), "krb5.conf for a Kerberos bind (VMM_KRB5_CONFIG)")
	kerberos := fs.Bool("kerberos", getenv("VMM_KRB5_CONFIG") != "", "bind with Kerberos as -bind-upn")
	spn := fs.String("spn", "", "LDAP service principal for Kerberos (default ldap/<tls-server-name or host>)")
	includeDisabled := fs.Bool("include-disabled", false, "also list disabled accounts")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	password := getenv("VMM_BIND_PASSWORD")
	switch {
	case *url == "":
		return errors.New("no server: set -url or VMM_LDAP_URL")
	case *ou == "":
		return errors.New("no OU: set -ou or VMM_HOSTS_OU")
	case password == "":
		return errors.New("no password: set VMM_BIND_PASSWORD")
	}
	cfg := discovery.Config{URLs: strings.Split(*url, ","), CAFile: *caCert, ServerName: *serverName}
	switch {
	case *kerberos:
		user, realm, ok := strings.Cut(*bindUPN, "@")
		if !ok {
			return errors.New("-kerberos needs -bind-upn user@realm")
		}
		cfg.Bind = discovery.KerberosBind{Username: user, Realm: strings.ToUpper(realm), Password: password,
			Krb5Config: *krb5, SPN: *spn}
	case *bindDN != "":
		cfg.Bind = discovery.SimpleBind{Name: *bindDN, Password: password}
	case *bindUPN != "":
		cfg.Bind = discovery.SimpleBind{Name: *bindUPN, Password: password}
	default:
		return errors.New("no account: set -bind-dn (VMM_BIND_DN) or -bind-upn (VMM_BIND_UPN)")
	}
	c, err := discovery.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()

	q := discovery.Query{OU: *ou, IncludeDisabled: *includeDisabled}
	var tw *tabwriter.Writer
	enc := json.NewEncoder(stdout)
	if !*asJSON {
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tDNS NAME\tROLE\tOS\tGROUP\tENABLED")
	}
	n := 0
	for h, err := range c.Hosts(ctx, q) {
		if err != nil {
			return err
		}
		n++
		if *asJSON {
			if err := enc.Encode(jsonHost{DN: h.DN, Name: h.Name, DNSHostName: h.DNSHostName,
				OperatingSystem: h.OperatingSystem, Version: h.OperatingSystemVersion, Role: h.Role.String(),
				Group: h.GroupPath(), Enabled: h.Enabled, GUID: h.GUID, SPNs: h.SPNs}); err != nil {
				return err
			}
			continue
		}
		dns := h.DNSHostName
		if dns == "" {
			dns = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\n", h.Name, dns, h.Role, h.OperatingSystem, h.GroupPath(), h.Enabled)
	}
	if tw != nil {
		fmt.Fprintf(tw, "%d hosts\n", n)
		return tw.Flush()
	}
	return nil
}
