// Selfservice serves the self-service portal on a simulated fleet, with
// development users, so that a person can try it in a browser:
//
//	go run ./examples/selfservice [-addr 127.0.0.1:8080]
//
// Sign in as alice or bob (password: the name followed by "-pw"; role
// "developers": template web-small for 2 points, quota 6 points) or carol
// (role "qa", shared, at most 3 VMs). Everything lives in a temporary
// directory removed on exit (Ctrl-C).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/vmmkit/vmmkit/hostapi/sim"
	"github.com/vmmkit/vmmkit/internal/demolib"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/selfservice"
	"github.com/vmmkit/vmmkit/vmm/store"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	flag.Parse()
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dir, err := os.MkdirTemp("", "vmmkit-selfservice-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(ctx, dir, *addr, nil); err != nil {
		log.Fatal(err)
	}
}

// run serves the portal until ctx ends; ready, when set, gets the address.
func run(ctx context.Context, dir, addr string, ready chan<- string) error {
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
	h, err := selfservice.New(selfservice.Config{
		Manager: mgr, Dev: true, AdminUsers: []string{"alice"},
		Auth: selfservice.DevUsers{
			"alice": {Password: "alice-pw", Groups: []string{"developers"}},
			"bob":   {Password: "bob-pw", Groups: []string{"developers"}},
			"carol": {Password: "carol-pw", Groups: []string{"qa"}},
		},
		Roles: []selfservice.Role{
			{Name: "developers", Groups: []string{"developers"}, Templates: []string{"web-small"},
				Points: map[string]int{"web-small": 2}, Quota: 6, HostGroup: g.ID,
				Actions: []string{"create", "start", "stop", "shutdown", "pause", "reboot", "remove", "checkpoint", "console"}},
			{Name: "qa", Groups: []string{"qa"}, Templates: []string{"web-small"}, MaxVMs: 3, Shared: true,
				HostGroup: g.ID, Actions: []string{"create", "start", "stop", "remove"}},
		},
	})
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Printf("self-service portal on http://%s (development users alice, bob, carol; password NAME-pw)\n", addr)
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
