// Selfservice serves the self-service portal on a simulated fleet, with
// development users, so that a person can try it in a browser:
//
//	go run ./examples/selfservice [-addr 127.0.0.1:8080]
//
// Sign in as alice or bob (password: the name followed by "-pw"; role
// "developers": template web-small for 2 points, quota 6 points) or carol
// (role "qa", shared, at most 3 VMs). Everything lives in a temporary
// directory removed on exit (Ctrl-C).
//
// With -ldap, users sign in with their Active Directory accounts instead,
// and the roles are those of two AD groups:
//
//	VMM_LDAP_PASSWORD=... go run ./examples/selfservice \
//	    -ldap ldaps://dc1.example.com -ldap-ca ca.pem -ldap-bind svc-vmm@example.com \
//	    -developers "VM Developers" -qa "VM Testers"
//
// The service account (-ldap-bind, its password in $VMM_LDAP_PASSWORD, not
// on the command line) looks accounts up; each user's password is checked
// by a bind as the user. Since users then type their domain passwords, the
// portal listens on loopback only (for a TLS proxy in front) unless it has
// -tls-cert and -tls-key.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/vmmkit/vmmkit/discovery"
	"github.com/vmmkit/vmmkit/hostapi/sim"
	"github.com/vmmkit/vmmkit/internal/demolib"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/selfservice"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// options are what the command line chooses.
type options struct {
	// ldap, when it has URLs, signs users in against Active Directory.
	ldap discovery.Config
	// developers and qa are the groups of the two roles.
	developers, qa string
	// tlsCert and tlsKey, when set, serve HTTPS.
	tlsCert, tlsKey string
}

// loopback reports whether addr ("host:port") listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	ldapURL := flag.String("ldap", "", "Active Directory server (ldaps://host or ldap://host, StartTLS); empty: development users")
	ca := flag.String("ldap-ca", "", "PEM file of the CA that signed the directory's certificate (default: the system's)")
	serverName := flag.String("ldap-server-name", "", "name in the directory's certificate, when it is not the URL's host")
	bind := flag.String("ldap-bind", "", "the service account that looks users up (DN or user@domain); password in $VMM_LDAP_PASSWORD")
	var o options
	flag.StringVar(&o.developers, "developers", "", "AD group of the role \"developers\" (with -ldap; required)")
	flag.StringVar(&o.qa, "qa", "", "AD group of the role \"qa\" (with -ldap; required)")
	flag.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	flag.StringVar(&o.tlsKey, "tls-key", "", "and this key (PEM)")
	flag.Parse()
	log.SetFlags(0)
	if *ldapURL != "" {
		if o.developers == "" || o.qa == "" {
			log.Fatal("with -ldap, name the AD groups of the two roles: -developers GROUP -qa GROUP")
		}
		if o.tlsCert == "" && !loopback(*addr) {
			log.Fatal("with -ldap, users type their domain passwords: serve on loopback (behind a TLS proxy), or give -tls-cert and -tls-key")
		}
		o.ldap = discovery.Config{URLs: []string{*ldapURL}, CAFile: *ca, ServerName: *serverName,
			Bind: discovery.SimpleBind{Name: *bind, Password: os.Getenv("VMM_LDAP_PASSWORD")}}
	} else {
		o.developers, o.qa = "developers", "qa"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dir, err := os.MkdirTemp("", "vmmkit-selfservice-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(ctx, dir, *addr, o, nil); err != nil {
		log.Fatal(err)
	}
}

// run serves the portal until ctx ends; ready, when set, gets the address.
func run(ctx context.Context, dir, addr string, o options, ready chan<- string) error {
	cfg := selfservice.Config{
		Dev: true, AdminUsers: []string{"alice"},
		Auth: selfservice.DevUsers{
			"alice": {Password: "alice-pw", Groups: []string{o.developers}},
			"bob":   {Password: "bob-pw", Groups: []string{o.developers}},
			"carol": {Password: "carol-pw", Groups: []string{o.qa}},
		},
	}
	who := "development users alice, bob, carol; password NAME-pw"
	if len(o.ldap.URLs) > 0 {
		ad, err := discovery.Dial(ctx, o.ldap)
		if err != nil {
			return err
		}
		defer ad.Close()
		cfg.Dev, cfg.AdminUsers, cfg.Auth = false, nil, selfservice.Directory{Client: ad}
		who = fmt.Sprintf("Active Directory accounts in %q or %q", o.developers, o.qa)
	}
	fleet, err := sim.New(sim.Config{Count: 6, TimeScale: 0.3})
	if err != nil {
		return err
	}
	if err := demolib.Build(filepath.Join(dir, "library"), demolib.Options{Template: "web-small"}); err != nil {
		return err
	}
	share, err := library.NewDirShare("central", "local", filepath.Join(dir, "library"))
	if err != nil {
		return err
	}
	lib, err := library.New(library.Options{Shares: []library.Share{share}})
	if err != nil {
		return err
	}
	if _, err := lib.Refresh(ctx); err != nil {
		return err
	}
	mgr, err := vmm.New(vmm.Config{StorePath: filepath.Join(dir, "vmm.db"), Sim: fleet, Library: lib})
	if err != nil {
		return err
	}
	defer mgr.Close()
	g, err := mgr.CreateGroup(ctx, store.HostGroup{Name: "self-service"})
	if err != nil {
		return err
	}
	for _, n := range fleet.Names() {
		if _, err := mgr.AddHost(ctx, g.ID, vmm.SimURI(n), &vmm.HostOptions{Site: "local"}); err != nil {
			return err
		}
	}
	cfg.Manager = mgr
	cfg.Roles = []selfservice.Role{
		{Name: "developers", Groups: []string{o.developers}, Templates: []string{"web-small"},
			Points: map[string]int{"web-small": 2}, Quota: 6, HostGroup: g.ID,
			Actions: []string{"create", "start", "stop", "shutdown", "pause", "reboot", "remove", "checkpoint", "console"}},
		{Name: "qa", Groups: []string{o.qa}, Templates: []string{"web-small"}, MaxVMs: 3, Shared: true,
			HostGroup: g.ID, Actions: []string{"create", "start", "stop", "remove"}},
	}
	h, err := selfservice.New(cfg)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
		go func() { errc <- srv.ListenAndServeTLS(o.tlsCert, o.tlsKey) }()
	} else {
		go func() { errc <- srv.ListenAndServe() }()
	}
	fmt.Printf("self-service portal on %s://%s (%s)\n", scheme, addr, who)
	if ready != nil {
		ready <- addr
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
