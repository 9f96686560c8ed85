// Package store is the persistent state of a vmm.Manager: the inventory
// (host groups, hosts, VMs), the jobs that carry every long operation, and
// the leases that let several managers share one database.
//
// Store is the contract; store/sqlite (one embedded file, the default) and
// store/postgres (a server that several managers share) implement it, and
// store/storetest is the conformance suite both pass.
//
// # Records and optimistic concurrency
//
// Every record carries a Version that the Store sets to 1 on create and
// bumps on every update. An update names the Version it read; if the record
// changed since, it fails with ErrConflict and the caller re-reads. VM names
// are unique within a host group, enforced by the database, so two
// concurrent CreateVM calls for one name give one VM and one ErrExists.
// CreateVMWithinQuota counts the owner's VM points and inserts in one
// transaction, so concurrent self-service requests never pass the limit.
//
// # Jobs
//
// A job is created queued. ClaimJob hands the oldest claimable job to one
// manager (its Owner) under a lease that the manager renews with RenewLease
// while it works; a job whose lease ran out, because its manager died, is
// claimable again and its Attempts count goes up. Only the current owner
// can UpdateJob, so a manager that lost its lease cannot overwrite the
// work of the one that took over. Steps carry the data a resumed step
// needs to be idempotent.
//
// # Leadership
//
// Periodic work (refresh, sync, optimise) runs on one manager: the one for
// which TryLead(name, owner, ttl) returns true. The leader calls it again
// well within ttl to stay leader; if it stops, another takes over after ttl,
// and Resign or Close hand over at once. It is a lease row in both
// databases (store/postgres says why not an advisory lock). Leases and job
// leases compare the clocks of the managers, which must agree to well
// within a ttl (NTP does).
//
// # Errors
//
// Methods fail with an *OpError naming the operation and record, wrapping
// ErrNotFound, ErrExists, ErrConflict, ErrQuota, ErrInvalid, ErrReadOnly
// (read-only file, file system or server, or a full disk), ErrClosed, or
// the error of the ctx that was cancelled; branch with errors.Is.
//
// # Schema
//
// The schema is versioned: opening a store applies, in one transaction,
// the migrations it lacks and records the version in table schema_version
// (PostgreSQL serialises concurrent openers with an advisory lock). A
// database written by a newer program is refused rather than misread.
// Times are stored as Unix nanoseconds and come back in UTC; JSON fields
// are stored as given.
package store
