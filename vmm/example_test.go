package vmm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/vmmkit/vmmkit/hostapi/sim"
	"github.com/vmmkit/vmmkit/internal/demolib"
	"github.com/vmmkit/vmmkit/library"
	"github.com/vmmkit/vmmkit/vmm"
	"github.com/vmmkit/vmmkit/vmm/store"
)

// exampleSetup makes what the examples share: a folder, a simulated fleet
// of three hosts and a library holding the template "web-small".
func exampleSetup() (dir string, fleet *sim.Fleet, lib *library.Library) {
	dir, err := os.MkdirTemp("", "vmm-example-")
	if err != nil {
		log.Fatal(err)
	}
	fleet, err = sim.New(sim.Config{Count: 3})
	if err != nil {
		log.Fatal(err)
	}
	if err := demolib.Build(filepath.Join(dir, "library"), demolib.Options{Template: "web-small"}); err != nil {
		log.Fatal(err)
	}
	share, err := library.NewDirShare("central", "paris", filepath.Join(dir, "library"))
	if err != nil {
		log.Fatal(err)
	}
	lib, err = library.New(library.Options{Shares: []library.Share{share}})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := lib.Refresh(context.Background()); err != nil {
		log.Fatal(err)
	}
	return dir, fleet, lib
}

// A manager on an embedded SQLite store, with the hosts of a simulated
// fleet in one group.
func ExampleNew() {
	dir, fleet, lib := exampleSetup()
	defer os.RemoveAll(dir)
	ctx := context.Background()

	mgr, err := vmm.New(vmm.Config{
		StorePath: filepath.Join(dir, "vmm.db"), // PostgresDSN for several managers
		Sim:       fleet,
		Library:   lib,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer mgr.Close()

	g, err := mgr.CreateGroup(ctx, store.HostGroup{Name: "paris", Goal: vmm.GoalBalance})
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range fleet.Names() {
		if _, err := mgr.AddHost(ctx, g.ID, vmm.SimURI(name), &vmm.HostOptions{Site: "paris"}); err != nil {
			log.Fatal(err)
		}
	}
	hosts, _ := mgr.Hosts(ctx, g.ID)
	for _, h := range hosts {
		fmt.Println(h.Name, h.Kind, h.Site)
	}
	// Unordered output:
	// host1 sim paris
	// host2 sim paris
	// host3 sim paris
}

// CreateVM queues a job; Wait returns it once it ended, with the host
// placement chose and its rating.
func ExampleManager_CreateVM() {
	dir, fleet, lib := exampleSetup()
	defer os.RemoveAll(dir)
	ctx := context.Background()
	mgr, err := vmm.New(vmm.Config{StorePath: filepath.Join(dir, "vmm.db"), Sim: fleet, Library: lib})
	if err != nil {
		log.Fatal(err)
	}
	defer mgr.Close()
	g, _ := mgr.CreateGroup(ctx, store.HostGroup{Name: "paris"})
	for _, name := range fleet.Names() {
		if _, err := mgr.AddHost(ctx, g.ID, vmm.SimURI(name), &vmm.HostOptions{Site: "paris"}); err != nil {
			log.Fatal(err)
		}
	}

	job, err := mgr.CreateVM(ctx, vmm.VMSpec{Name: "web01", Group: g.ID, Template: "web-small", Owner: "alice"})
	if err != nil {
		log.Fatal(err) // the spec was refused: a bad name, no such group, ...
	}
	job, err = mgr.Wait(ctx, job.ID)
	if err != nil {
		log.Fatal(err) // a *vmm.JobError says why the job failed
	}
	var res vmm.CreateResult
	if err := json.Unmarshal(job.Result, &res); err != nil {
		log.Fatal(err)
	}
	vm, _ := mgr.Store().VM(ctx, res.VMID)
	fmt.Println(vm.Name, vm.State, vm.Owner)
	fmt.Println("rated", len(res.Ratings), "hosts; chosen host has", res.Stars > 0, "stars")
	for _, s := range job.Steps {
		fmt.Println(s.Name, s.State)
	}
	// Output:
	// web01 running alice
	// rated 3 hosts; chosen host has true stars
	// reserve succeeded
	// place succeeded
	// disks succeeded
	// define succeeded
	// start succeeded
}

// Watch follows a job as it runs: each change of its steps and progress,
// until it ends.
func ExampleManager_Watch() {
	dir, fleet, lib := exampleSetup()
	defer os.RemoveAll(dir)
	ctx := context.Background()
	mgr, err := vmm.New(vmm.Config{StorePath: filepath.Join(dir, "vmm.db"), Sim: fleet, Library: lib})
	if err != nil {
		log.Fatal(err)
	}
	defer mgr.Close()
	g, _ := mgr.CreateGroup(ctx, store.HostGroup{Name: "paris"})
	for _, name := range fleet.Names() {
		if _, err := mgr.AddHost(ctx, g.ID, vmm.SimURI(name), nil); err != nil {
			log.Fatal(err)
		}
	}
	job, err := mgr.CreateVM(ctx, vmm.VMSpec{Name: "db01", Group: g.ID, Template: "web-small"})
	if err != nil {
		log.Fatal(err)
	}
	var last store.Job
	for j, err := range mgr.Watch(ctx, job.ID) {
		if err != nil {
			log.Fatal(err)
		}
		// A progress bar would show j.Progress (0 to 1) and the running step.
		last = j
	}
	fmt.Println(last.State, last.Progress)
	// Output:
	// succeeded 1
}
