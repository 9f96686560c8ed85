package sqldb

// migrations are the schema versions in order; migration i (0-based) takes
// the schema from version i to i+1. The SQL is valid for SQLite and
// PostgreSQL. Never edit a released migration: append a new one.
var migrations = []string{
	`CREATE TABLE host_groups (
	id TEXT PRIMARY KEY,
	parent_id TEXT REFERENCES host_groups(id),
	name TEXT NOT NULL,
	goal TEXT NOT NULL,
	reserves TEXT NOT NULL,
	version BIGINT NOT NULL
);
CREATE INDEX host_groups_parent ON host_groups(parent_id);
CREATE TABLE hosts (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	group_id TEXT NOT NULL REFERENCES host_groups(id),
	uri TEXT NOT NULL,
	kind TEXT NOT NULL,
	maintenance INTEGER NOT NULL,
	added_at BIGINT NOT NULL,
	version BIGINT NOT NULL
);
CREATE INDEX hosts_group ON hosts(group_id);
CREATE TABLE vms (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	host_id TEXT REFERENCES hosts(id),
	group_id TEXT NOT NULL REFERENCES host_groups(id),
	template TEXT NOT NULL,
	owner TEXT NOT NULL,
	state TEXT NOT NULL,
	points INTEGER NOT NULL,
	spec TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	version BIGINT NOT NULL,
	UNIQUE (group_id, name)
);
CREATE INDEX vms_host ON vms(host_id);
CREATE INDEX vms_owner ON vms(owner);
CREATE TABLE jobs (
	id TEXT PRIMARY KEY,
	kind TEXT NOT NULL,
	user_name TEXT NOT NULL,
	state TEXT NOT NULL,
	steps TEXT NOT NULL,
	progress DOUBLE PRECISION NOT NULL,
	input TEXT NOT NULL,
	result TEXT NOT NULL,
	error TEXT NOT NULL,
	owner TEXT NOT NULL,
	lease_until BIGINT NOT NULL,
	attempts INTEGER NOT NULL,
	created_at BIGINT NOT NULL,
	started_at BIGINT NOT NULL,
	ended_at BIGINT NOT NULL,
	version BIGINT NOT NULL
);
CREATE INDEX jobs_claim ON jobs(state, created_at);
CREATE TABLE leases (
	name TEXT PRIMARY KEY,
	owner TEXT NOT NULL,
	until_ns BIGINT NOT NULL
);`,
	`ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE hosts ADD COLUMN site TEXT NOT NULL DEFAULT ''`,
	`CREATE UNIQUE INDEX hosts_name ON hosts (lower(name))`,
	`CREATE TABLE sessions (
	id TEXT PRIMARY KEY,
	user_name TEXT NOT NULL,
	groups_json TEXT NOT NULL,
	csrf TEXT NOT NULL,
	expires_ns BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions(expires_ns)`,
}

// Version is the schema version this code writes.
var Version = len(migrations)
