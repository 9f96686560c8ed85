// Package vmm is the facade a product embeds: a Manager keeps the inventory
// of a fleet of virtualization hosts, runs every long operation as a job
// that survives crashes, and carries out the workflows that cross vmmkit's
// packages.
//
//	mgr, err := vmm.New(vmm.Config{
//		StorePath: "/var/lib/myproduct/vmm.db", // or PostgresDSN for several managers
//		Library:   lib,                         // *library.Library
//		Logger:    slog.Default(),
//	})
//	if err != nil {
//		return err
//	}
//	defer mgr.Close()
//	job, err := mgr.CreateVM(ctx, vmm.VMSpec{Name: "web01", Group: groupID, Template: "win2003-std"})
//	...
//	job, err = mgr.Wait(ctx, job.ID) // or range over mgr.Watch(ctx, job.ID)
//
// # Inventory
//
// Host groups form a tree; each has a placement goal (GoalBalance spreads
// the load, GoalPack fills few hosts) and reserves kept free on its hosts.
// Hosts are added by URI (AddHost: sim:///NAME for the simulator, qemu
// URIs for libvirt; Config.Connectors adds other kinds), or found in Active
// Directory (AddHostsFromAD). A host in maintenance takes no VMs and is
// emptied by a job (SetMaintenance). VMs are records of the store; the
// manager that leads (one of those sharing a store) watches every host's
// events and keeps them current: VMs made behind the manager's back are
// adopted, states follow the hosts, and a VM its host no longer has is
// marked VMMissing.
//
// # Jobs
//
// Every long operation is a store.Job, written before it starts, with its
// steps, progress, result or error, start and end times and the user who
// asked. Workers claim queued jobs with a lease they renew; a manager that
// dies loses its lease, and another manager (or the same one, restarted)
// resumes the job: the steps recorded done are not run again, and the step
// that was running is run again knowing it may have been half done (see
// Do), which every workflow's steps handle, so that nothing is done twice
// (no second VM, no second disk). Cancel stops a job on whichever manager
// runs it; a cancelled or failed CreateVM takes back what it did. Retry
// queues a failed or cancelled job again from its first step not done.
// Products add job kinds of their own through Config.Jobs and Submit.
//
// # Workflows
//
//   - CreateVM: reserve the name, rate the group's hosts (package
//     placement), copy the template's disks from the library replica
//     nearest the chosen host or make differencing disks over a copy the
//     host keeps, define, start.
//   - MigrateVM: to the best rated other host, or the one given; live when
//     the hosts can. Optimize: rebalance a group (placement.Rebalance) and
//     carry out the moves.
//   - ConvertPhysical: capture a physical disk (package p2v), put the image
//     in the library, optionally deploy it. Consolidate: rank physical
//     machines from their history and plan them onto a group (package
//     placement/consolidate), then convert the planned ones.
//   - AddHostsFromAD: add the hosts of an OU (package discovery).
//
// # Several managers
//
// Managers that share one PostgreSQL database share the work: a job runs on
// one of them at a time (claims use SELECT ... FOR UPDATE SKIP LOCKED), and
// one of them leads, by a lease row in the store rather than an advisory
// lock (so that SQLite, which has none, works the same): it watches the
// hosts and does the periodic work (Config.RefreshEvery, OptimizeEvery).
// When it dies, another takes over within Config.Lease. Leases are
// measured with each manager's clock, so the managers' clocks must agree
// to well within Config.Lease.
//
// # Errors
//
// Refused input wraps store.ErrInvalid (a bad name, a missing group,
// nothing to make a VM from); the store's errors (store.ErrExists,
// ErrNotFound, ErrReadOnly, ...) come back as the store gives them. A job
// that failed or was cancelled gives Wait a *JobError with the reason the
// job recorded.
package vmm
