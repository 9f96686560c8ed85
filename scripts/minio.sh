#!/usr/bin/env bash
# minio.sh start|stop [STATE_DIR] — a throw-away MinIO server on loopback for
# the tests of package library/s3share, called by testenv.sh.
#
#   eval "$(scripts/minio.sh start "$state/minio")"   # prints export lines
#   scripts/minio.sh stop "$state/minio"
#
# MinIO is licensed under the GNU AGPL v3. vmmkit never imports it: this
# script builds the server from the Go module proxy at a pinned version and
# runs it as a separate process, which the tests talk to over HTTP with the
# Apache-licensed client github.com/minio/minio-go/v7.
#
# The binary is built once, with `go install github.com/minio/minio@VERSION`,
# into a cache outside STATE_DIR
# (${XDG_CACHE_HOME:-$HOME/.cache}/vmmkit/minio-VERSION/minio), so later starts
# skip the build (a cold build takes minutes; the cache makes a start take
# about a second). STATE_DIR defaults to $VMM_TEST_STATE/minio, or
# ${TMPDIR:-/tmp}/vmmkit-minio, and holds the data directory, the log, the
# pidfile and env.sh. The server listens on 127.0.0.1 only, on a free port,
# with fixed test credentials, and start creates one bucket per test "site".
# Progress goes to stderr; stdout carries only `export VMM_TEST_S3_...=...`
# lines (also saved in STATE_DIR/env.sh):
#
#   VMM_TEST_S3_ENDPOINT    host:port of the server (plain HTTP)
#   VMM_TEST_S3_ACCESS_KEY  the root user
#   VMM_TEST_S3_SECRET_KEY  its password
#   VMM_TEST_S3_REGION      us-east-1
#   VMM_TEST_S3_BUCKETS     the site buckets, comma-separated
#   VMM_TEST_S3_MINIO       the server binary, for tests that run a server
#                           of their own (to stop it mid-operation)
#
# start is safe to run again: a server already running from STATE_DIR is
# reused. stop stops exactly the process start started and keeps STATE_DIR.
#
# Tunables (environment):
#   VMM_MINIO_VERSION        module version of github.com/minio/minio to build
#   VMM_MINIO_BIN            use this minio binary instead of building one
#   VMM_MINIO_START_TIMEOUT  seconds to wait for the server to answer (60)
set -euo pipefail

log() { printf '[minio] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now_ms() { date +%s%3N; }
since() { local d=$(( $(now_ms) - $1 )); printf '%d.%ds' $((d / 1000)) $(((d % 1000) / 100)); }
T_START=$(now_ms)

CMD=${1:-}
case $CMD in start|stop) ;; *) echo "usage: $0 start|stop [STATE_DIR]" >&2; exit 2;; esac
if [[ -n ${VMM_TEST_STATE:-} ]]; then DEFAULT_STATE=$VMM_TEST_STATE/minio; else DEFAULT_STATE=${TMPDIR:-/tmp}/vmmkit-minio; fi
STATE=${2:-$DEFAULT_STATE}

VERSION=${VMM_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/vmmkit/minio-$VERSION
ACCESS_KEY=vmmkit-test
SECRET_KEY=vmmkit-test-secret-key
REGION=us-east-1
BUCKETS=(vmmkit-site-a vmmkit-site-b vmmkit-site-c)
START_TIMEOUT=${VMM_MINIO_START_TIMEOUT:-60}

# is_ours PID: PID is a minio server serving this state directory's data.
is_ours() {
	local pid=$1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$STATE/data"
}

# ---------------------------------------------------------------- stop
if [[ $CMD == stop ]]; then
	if [[ ! -d $STATE ]]; then
		log "no state directory $STATE; nothing to stop"
		exit 0
	fi
	STATE=$(cd "$STATE" && pwd)
	PIDFILE=$STATE/minio.pid
	if [[ -s $PIDFILE ]] && pid=$(cat "$PIDFILE") && is_ours "$pid"; then
		log "stopping minio (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			is_ours "$pid" || break
			sleep 0.1
		done
		if is_ours "$pid"; then
			log "minio did not exit after 10s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	else
		log "no running minio of this state directory"
	fi
	rm -f "$PIDFILE"
	exit 0
fi

# ---------------------------------------------------------------- start
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
PIDFILE=$STATE/minio.pid
LOGFILE=$STATE/minio.log

command -v curl >/dev/null || {
	log "installing curl"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends curl >&2
}

# ---------------------------------------------------------------- binary
if [[ -n ${VMM_MINIO_BIN:-} ]]; then
	BIN=$VMM_MINIO_BIN
	[[ -x $BIN ]] || die "VMM_MINIO_BIN=$BIN is not executable"
else
	BIN=$CACHE/minio
	mkdir -p "$CACHE"
	# One build at a time per cache; the binary appears whole (rename).
	exec 9> "$CACHE/.lock"
	flock 9
	if [[ ! -x $BIN ]]; then
		command -v go >/dev/null || die "go is not on PATH (needed to build minio $VERSION)"
		log "building github.com/minio/minio@$VERSION (once; minutes on a cold Go cache)"
		t0=$(now_ms)
		tmp=$(mktemp -d "$CACHE/build.XXXXXX")
		# Outside any module, so the project's go.mod plays no part.
		if ! (cd "$tmp" && GOBIN=$tmp GOFLAGS=-mod=mod GO111MODULE=on go install "github.com/minio/minio@$VERSION") > "$CACHE/build.log" 2>&1; then
			tail -20 "$CACHE/build.log" >&2
			rm -rf "$tmp"
			die "building minio failed (log in $CACHE/build.log)"
		fi
		mv "$tmp/minio" "$BIN"
		rm -rf "$tmp"
		log "built $BIN in $(since "$t0")"
	fi
	exec 9>&-
fi

# ---------------------------------------------------------------- helpers
port_taken() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 40000))
		port_taken "$p" || { echo "$p"; return 0; }
	done
	return 1
}
up() { curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/minio/health/ready" 2>/dev/null; }
s3() { # s3 METHOD PATH: a signed request as the root user; prints the HTTP status
	curl -sS -o "$STATE/last-response" -w '%{http_code}' --max-time 10 -X "$1" \
		--aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY:$SECRET_KEY" "http://127.0.0.1:$PORT$2"
}

emit_env() {
	local kv=(
		VMM_TEST_S3_ENDPOINT "127.0.0.1:$PORT"
		VMM_TEST_S3_ACCESS_KEY "$ACCESS_KEY"
		VMM_TEST_S3_SECRET_KEY "$SECRET_KEY"
		VMM_TEST_S3_REGION "$REGION"
		VMM_TEST_S3_BUCKETS "$(IFS=,; echo "${BUCKETS[*]}")"
		VMM_TEST_S3_MINIO "$BIN"
	)
	local i
	for ((i = 0; i < ${#kv[@]}; i += 2)); do
		printf "export %s='%s'\n" "${kv[i]}" "${kv[i+1]//\'/\'\\\'\'}"
	done > "$STATE/env.sh"
	cat "$STATE/env.sh"
}

# ---------------------------------------------------------------- already up?
if [[ -s $PIDFILE && -s $STATE/port ]] && is_ours "$(cat "$PIDFILE")"; then
	PORT=$(cat "$STATE/port")
	if up; then
		log "minio already running from $STATE (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
		emit_env
		exit 0
	fi
	log "minio of $STATE runs but does not answer; restarting it"
	"$0" stop "$STATE"
fi

# ---------------------------------------------------------------- start
PORT=$(free_port) || die "found no free port"
echo "$PORT" > "$STATE/port"
mkdir -p "$STATE/data"
log "starting minio on 127.0.0.1:$PORT (data in $STATE/data)"
t0=$(now_ms)
rm -f "$PIDFILE"
MINIO_ROOT_USER=$ACCESS_KEY MINIO_ROOT_PASSWORD=$SECRET_KEY MINIO_REGION=$REGION \
	MINIO_BROWSER=off MINIO_UPDATE=off \
	setsid "$BIN" server --quiet --address "127.0.0.1:$PORT" "$STATE/data" \
	>> "$LOGFILE" 2>&1 < /dev/null &
echo $! > "$PIDFILE"
deadline=$(( $(date +%s) + START_TIMEOUT ))
until up; do
	is_ours "$(cat "$PIDFILE")" || { tail -20 "$LOGFILE" >&2; die "minio exited during start-up"; }
	if (( $(date +%s) >= deadline )); then
		tail -20 "$LOGFILE" >&2
		"$0" stop "$STATE"
		die "minio did not answer within ${START_TIMEOUT}s"
	fi
	sleep 0.1
done
log "minio answers after $(since "$t0") (pid $(cat "$PIDFILE"))"

for b in "${BUCKETS[@]}"; do
	# Signed requests may get 503 (server not initialized) for a moment
	# after the health check answers.
	for _ in $(seq 1 100); do
		code=$(s3 PUT "/$b") || die "creating bucket $b failed"
		[[ $code == 503 ]] || break
		sleep 0.1
	done
	case $code in
	200) log "created bucket $b" ;;
	409) ;; # already there (BucketAlreadyOwnedByYou)
	*) cat "$STATE/last-response" >&2; die "creating bucket $b: HTTP $code" ;;
	esac
done

log "ready in $(since "$T_START") total"
emit_env
