#!/usr/bin/env bash
# postgres.sh start|stop [STATE_DIR] — a throw-away PostgreSQL server on
# loopback for the tests of vmm/store/postgres, called by testenv.sh.
#
#   eval "$(scripts/postgres.sh start "$state/pg")"   # prints export lines
#   scripts/postgres.sh stop "$state/pg"
#
# start installs Debian's postgresql if its server binaries are missing,
# runs initdb into STATE_DIR/data (as the postgres OS user when run as root:
# initdb refuses root, so STATE_DIR is handed to that user and its parent
# directories must let it through), and starts the server on 127.0.0.1 on a
# free port, with its unix socket in STATE_DIR/sock. It creates the role
# vmmtest (password login over TCP, allowed to create databases: each test
# makes a fresh one) and its database vmmtest, waits until the server
# answers, and prints on stdout only (also saved in STATE_DIR/env.sh):
#
#   VMM_TEST_PG_DSN   postgres://vmmtest:...@127.0.0.1:PORT/vmmtest?sslmode=disable
#
# Progress goes to stderr. STATE_DIR defaults to $VMM_TEST_STATE/pg, or
# ${TMPDIR:-/tmp}/vmmkit-pg. start is safe to run again: a server already
# running from STATE_DIR is reused. stop stops exactly that server
# (pg_ctl stop -m fast) and keeps STATE_DIR.
#
# Tunables (environment):
#   VMM_PG_BINDIR         PostgreSQL server binaries (default: the newest
#                         /usr/lib/postgresql/*/bin)
#   VMM_PG_START_TIMEOUT  seconds to wait for the server to answer (60)
set -euo pipefail

log() { printf '[postgres] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

CMD=${1:-}
case $CMD in start|stop) ;; *) echo "usage: $0 start|stop [STATE_DIR]" >&2; exit 2;; esac
if [[ -n ${VMM_TEST_STATE:-} ]]; then DEFAULT_STATE=$VMM_TEST_STATE/pg; else DEFAULT_STATE=${TMPDIR:-/tmp}/vmmkit-pg; fi
STATE=${2:-$DEFAULT_STATE}
START_TIMEOUT=${VMM_PG_START_TIMEOUT:-60}
ROLE=vmmtest
PASSWORD=vmmtest-secret
DB=vmmtest

bindir() {
	if [[ -n ${VMM_PG_BINDIR:-} ]]; then echo "$VMM_PG_BINDIR"; return; fi
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
	[[ -n $d && -x $d/initdb ]] && echo "$d"
}

# as_pg CMD...: run CMD as the postgres OS user when we are root.
as_pg() {
	if [[ $(id -u) -eq 0 ]]; then
		# From / : the caller's folder may be closed to the postgres user,
		# and its tools complain that they cannot change into it.
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# ---------------------------------------------------------------- stop
if [[ $CMD == stop ]]; then
	if [[ ! -d $STATE/data ]]; then
		log "no data directory in $STATE; nothing to stop"
		exit 0
	fi
	STATE=$(cd "$STATE" && pwd)
	BIN=$(bindir) || die "no PostgreSQL server binaries found"
	if as_pg "$BIN/pg_ctl" -D "$STATE/data" status >/dev/null 2>&1; then
		log "stopping the server of $STATE/data"
		as_pg "$BIN/pg_ctl" -D "$STATE/data" stop -m fast -w >&2
	else
		log "no running server of $STATE/data"
	fi
	exit 0
fi

# ---------------------------------------------------------------- start
BIN=$(bindir) || true
if [[ -z $BIN ]]; then
	[[ $(id -u) -eq 0 ]] || die "postgresql is not installed (run as root, or install it yourself)"
	log "installing postgresql"
	# The tests run their own server: the package must not create and start
	# a default cluster on port 5432 that nothing here would stop.
	mkdir -p /etc/postgresql-common
	if ! grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf; then
		echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends postgresql >&2
	BIN=$(bindir) || die "postgresql installed but no server binaries found"
fi

mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
DATA=$STATE/data
SOCK=$STATE/sock
LOGFILE=$STATE/postgres.log
if [[ $(id -u) -eq 0 ]]; then
	chown postgres: "$STATE"
	as_pg test -w "$STATE" -a -x "$STATE" || die "the postgres user cannot use $STATE (a parent directory is closed to it)"
fi
as_pg mkdir -p "$SOCK"

# A port is taken when something accepts on it (bash's /dev/tcp: no need
# for ss, which minimal systems lack).
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 40000))
		port_taken "$p" || { echo "$p"; return 0; }
	done
	return 1
}
psql_su() { as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U postgres -d postgres "$@"; }

emit_env() {
	printf "export VMM_TEST_PG_DSN='postgres://%s:%s@127.0.0.1:%s/%s?sslmode=disable'\n" \
		"$ROLE" "$PASSWORD" "$PORT" "$DB" > "$STATE/env.sh"
	chmod 600 "$STATE/env.sh"
	cat "$STATE/env.sh"
}

if as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 && [[ -s $STATE/port ]]; then
	PORT=$(cat "$STATE/port")
	if as_pg "$BIN/pg_isready" -q -h "$SOCK" -p "$PORT"; then
		log "server already running from $DATA on 127.0.0.1:$PORT"
		emit_env
		exit 0
	fi
	log "the server of $DATA runs but does not answer; restarting it"
	as_pg "$BIN/pg_ctl" -D "$DATA" stop -m fast -w >&2 || true
fi

if [[ ! -s $DATA/PG_VERSION ]]; then
	log "initdb into $DATA"
	as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
		-E UTF8 --locale=C.UTF-8 >"$STATE/initdb.log" 2>&1 || { tail -20 "$STATE/initdb.log" >&2; die "initdb failed"; }
fi

PORT=$(free_port) || die "found no free port"
echo "$PORT" > "$STATE/port"
log "starting postgres on 127.0.0.1:$PORT (socket in $SOCK)"
as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t "$START_TIMEOUT" \
	-o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCK -c unix_socket_permissions=0700 -c max_connections=200" start >&2 ||
	{ tail -20 "$LOGFILE" >&2; die "postgres did not start"; }
# The superuser signs in through the socket without a password (trust), so
# only the postgres account may reach the socket (0700 above); and a start
# that fails from here on stops the server it started.
trap 'as_pg "$BIN/pg_ctl" -D "$DATA" stop -m immediate >&2 || true' ERR
deadline=$(( $(date +%s) + START_TIMEOUT ))
until as_pg "$BIN/pg_isready" -q -h "$SOCK" -p "$PORT"; do
	(( $(date +%s) < deadline )) || { tail -20 "$LOGFILE" >&2; as_pg "$BIN/pg_ctl" -D "$DATA" stop -m immediate >&2 || true; die "postgres did not answer within ${START_TIMEOUT}s"; }
	sleep 0.1
done

if [[ -z $(psql_su -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'") ]]; then
	psql_su -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'"
fi
if [[ -z $(psql_su -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'") ]]; then
	psql_su -c "CREATE DATABASE $DB OWNER $ROLE"
fi
trap - ERR
log "ready"
emit_env
