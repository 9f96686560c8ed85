package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Reserves is what placement keeps free on every host of a group.
type Reserves struct {
	CPUPercent int   `json:"cpu_percent,omitempty"` // of the host's CPU capacity
	MemoryMiB  int64 `json:"memory_mib,omitempty"`
	DiskGiB    int64 `json:"disk_gib,omitempty"`
}

// HostGroup is a node of the host group tree.
type HostGroup struct {
	ID       string
	ParentID string // "" for a root group
	Name     string
	Goal     string // placement goal ("balance", "pack", ...)
	Reserves Reserves
	Version  int64 // set by the Store; pass it back unchanged to Update
}

// Host is a managed hypervisor host. Name is unique, whatever its case.
type Host struct {
	ID          string
	Name        string
	GroupID     string // required
	URI         string
	Kind        string // driver kind
	Site        string // where the host is, for picking library replicas near it
	Maintenance bool
	AddedAt     time.Time
	Version     int64
}

// VM is a virtual machine of the inventory. Name is unique within GroupID.
type VM struct {
	ID        string
	Name      string
	HostID    string // "" while unplaced
	GroupID   string // required
	Template  string
	Owner     string
	State     string
	Points    int // quota points the VM counts for its Owner
	Spec      json.RawMessage
	CreatedAt time.Time // set by the Store when zero
	UpdatedAt time.Time // set by the Store on every write
	Version   int64
}

// JobState is the state of a Job.
type JobState string

// Job states. A job is queued until a manager claims it, running while a
// manager holds its lease, then succeeded, failed or cancelled.
const (
	JobQueued    JobState = "queued"
	JobRunning   JobState = "running"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// Step is one step of a Job.
type Step struct {
	Name      string          `json:"name"`
	State     JobState        `json:"state"`
	StartedAt time.Time       `json:"started_at,omitzero"`
	EndedAt   time.Time       `json:"ended_at,omitzero"`
	Error     string          `json:"error,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"` // what a resumed step needs
}

// Job is a long operation, written to the store before it starts.
type Job struct {
	ID         string
	Kind       string
	User       string // who asked
	State      JobState
	Steps      []Step
	Progress   float64 // 0 to 1
	Input      json.RawMessage
	Result     json.RawMessage
	Error      string
	Owner      string    // manager instance holding the job; "" when queued
	LeaseUntil time.Time // the Owner's claim ends then unless renewed
	Attempts   int       // times the job was claimed
	// CancelRequested is set by CancelJob on a running job; its Owner
	// sees it and ends the job as cancelled.
	CancelRequested bool
	CreatedAt       time.Time
	StartedAt       time.Time
	EndedAt         time.Time
	Version         int64
}

// VMFilter selects VMs; empty fields match everything.
type VMFilter struct {
	GroupID, HostID, Owner string
}

// JobFilter selects jobs; empty fields match everything.
type JobFilter struct {
	State      JobState
	Kind, User string
}

// Store is the persistent state of a manager: the inventory, the jobs and
// the leases that let several managers share one database. Implementations
// (store/sqlite, store/postgres) are safe for concurrent use, also by
// several Store handles, in one or several processes, on the same database.
//
// Records are created with Version 1; every Update must carry the Version
// it read and gets ErrConflict when the record changed since, and returns
// the record with its new Version. Errors are *OpError wrapping ErrNotFound,
// ErrExists, ErrConflict, ErrQuota, ErrInvalid, ErrReadOnly, ErrClosed or
// the ctx error. An ID left empty on Create is generated.
type Store interface {
	CreateGroup(ctx context.Context, g HostGroup) (HostGroup, error)
	UpdateGroup(ctx context.Context, g HostGroup) (HostGroup, error)
	Group(ctx context.Context, id string) (HostGroup, error)
	Groups(ctx context.Context) ([]HostGroup, error)
	// DeleteGroup fails with ErrConflict while hosts, VMs or child groups
	// refer to the group.
	DeleteGroup(ctx context.Context, id string) error

	// CreateHost fails with ErrExists when a host has the ID or the name
	// (in any case), also when two callers race for it.
	CreateHost(ctx context.Context, h Host) (Host, error)
	UpdateHost(ctx context.Context, h Host) (Host, error)
	Host(ctx context.Context, id string) (Host, error)
	// Hosts lists the hosts of a group, or all hosts when groupID is "".
	Hosts(ctx context.Context, groupID string) ([]Host, error)
	// DeleteHost fails with ErrConflict while VMs are placed on the host.
	DeleteHost(ctx context.Context, id string) error

	// CreateVM fails with ErrExists when the group has a VM of that name,
	// also when two callers race for it: exactly one wins.
	CreateVM(ctx context.Context, vm VM) (VM, error)
	// CreateVMWithinQuota creates vm unless the points of vm.Owner's VMs
	// plus vm.Points would exceed limit (ErrQuota). The check and the
	// insert are one transaction: concurrent callers never exceed limit.
	CreateVMWithinQuota(ctx context.Context, vm VM, limit int) (VM, error)
	UpdateVM(ctx context.Context, vm VM) (VM, error)
	VM(ctx context.Context, id string) (VM, error)
	VMs(ctx context.Context, f VMFilter) ([]VM, error)
	DeleteVM(ctx context.Context, id string) error

	// CreateJob stores a new job as queued (State, Owner and lease are
	// ignored).
	CreateJob(ctx context.Context, j Job) (Job, error)
	// UpdateJob writes j if j.Owner still holds the job and j.Version is
	// current; otherwise ErrConflict. Setting a final State releases it.
	UpdateJob(ctx context.Context, j Job) (Job, error)
	Job(ctx context.Context, id string) (Job, error)
	// Jobs lists the jobs matching f, oldest first.
	Jobs(ctx context.Context, f JobFilter) ([]Job, error)
	// ClaimJob gives owner the oldest job of one of kinds (any kind when
	// kinds is empty) that is queued, or running under a lease that has
	// expired, sets it running under a lease of the given duration, and
	// counts the attempt. Two claimers never get the same job while its
	// lease runs. ErrNotFound when there is none.
	ClaimJob(ctx context.Context, owner string, lease time.Duration, kinds ...string) (Job, error)
	// CancelJob asks job id to end: a queued job is cancelled at once, a
	// running one gets CancelRequested for its owner to act on, and an
	// ended one is returned as it is.
	CancelJob(ctx context.Context, id string) (Job, error)
	// RetryJob queues a failed or cancelled job again, keeping its steps
	// (a runner skips the steps that succeeded) and clearing its error,
	// result, end time and cancel request; ErrConflict for a job in any
	// other state.
	RetryJob(ctx context.Context, id string) (Job, error)
	// RenewLease extends owner's lease on a running job; ErrConflict when
	// owner no longer holds it.
	RenewLease(ctx context.Context, id, owner string, lease time.Duration) (time.Time, error)

	// TryLead makes owner the leader of name for ttl, or extends its term,
	// and reports whether owner leads. A leader that stops calling TryLead
	// is replaced after ttl; Resign and Close hand over at once.
	TryLead(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	// Resign ends owner's term as leader of name, if it has one.
	Resign(ctx context.Context, name, owner string) error

	// Close resigns the leaderships taken through this handle and releases
	// its connections.
	Close() error
}

// NewID returns a random 128-bit identifier in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
