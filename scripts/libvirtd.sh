#!/usr/bin/env bash
# libvirtd.sh start|stop ROLE DIR — a private libvirtd (QEMU driver, TCG) for
# the tests of hostapi/libvirt, called by testenv.sh.
#
#   scripts/libvirtd.sh start primary DIR          # prints export VMM_TEST_LIBVIRT_* lines
#   scripts/libvirtd.sh start peer DIR PRIMARY_DIR # a second host for migration;
#                                                  # borrows PRIMARY_DIR's QEMU capability cache
#   scripts/libvirtd.sh stop DIR                   # destroys guests, stops the daemon and any QEMU left
#
# The daemon runs as root and listens on a unix socket only (DIR/run/libvirt-sock,
# which must fit in 107 bytes). It runs in a private mount namespace where DIR's
# subfolders are mounted over /etc/libvirt, /run/libvirt, /var/lib/libvirt,
# /var/cache/libvirt and /var/log/libvirt, so it never touches a system libvirt
# and two daemons run side by side, each its own "host" with its own host UUID
# and its own directory pool "default". Guests run as root under software
# emulation (domain type qemu), so no /dev/kvm is needed.
#
# Progress goes to stderr; stdout carries only export lines.
set -euo pipefail

log() { printf 'libvirtd: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

LIBVIRTD=$(command -v libvirtd 2>/dev/null || echo /usr/sbin/libvirtd)

install_packages() {
	local pkgs=(libvirt-daemon libvirt-clients qemu-system-x86 qemu-utils util-linux iproute2) missing=() p
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Without recommends: libvirt-daemon-system would pull in systemd, polkit and iptables.
	if ! apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2; then
		apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
		apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
	fi
	LIBVIRTD=$(command -v libvirtd 2>/dev/null || echo /usr/sbin/libvirtd)
}

# The QEMU driver looks up its default account (libvirt-qemu) before it reads
# qemu.conf and refuses to start without it, although guests here run as root.
ensure_accounts() {
	getent group kvm >/dev/null || groupadd --system kvm
	getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
	getent passwd libvirt-qemu >/dev/null ||
		useradd --system --gid kvm --groups libvirt-qemu --no-create-home \
			--home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
}

daemon_pid() { # dir
	local f=$1/libvirtd.pid pid
	[[ -s $f ]] || return 1
	pid=$(tr -dc '0-9' <"$f")
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	[[ $(readlink -f "/proc/$pid/exe" 2>/dev/null) == "$(readlink -f "$LIBVIRTD")" ]] || return 1
	echo "$pid"
}

start() { # role dir [primary-dir]
	local role=$1 dir=$2 seed=${3:-}
	[[ $(id -u) -eq 0 ]] || die "must run as root (system libvirtd, mount namespace)"
	install_packages
	ensure_accounts
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	local sock=$dir/run/libvirt-sock
	((${#sock} <= 107)) || die "socket path $sock is longer than 107 bytes: use a shorter VMM_TEST_STATE"
	[[ $dir != *[[:space:]\'\"\\]* ]] || die "$dir must not contain spaces, quotes or backslashes"
	local uri="qemu+unix:///system?socket=$sock"
	mkdir -p "$dir"/{etc,run,lib/images,cache,log,images}
	# A host UUID per daemon: libvirt refuses to migrate to a host with its own UUID.
	[[ -s $dir/host-uuid ]] || cat /proc/sys/kernel/random/uuid >"$dir/host-uuid"
	local uuid
	uuid=$(tr -dc '0-9a-f-' <"$dir/host-uuid")

	if ! daemon_pid "$dir" >/dev/null; then
		cat >"$dir/etc/libvirtd.conf" <<-CONF
			listen_tls = 0
			listen_tcp = 0
			unix_sock_group = "root"
			unix_sock_ro_perms = "0770"
			unix_sock_rw_perms = "0770"
			auth_unix_ro = "none"
			auth_unix_rw = "none"
			host_uuid = "$uuid"
			log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
		CONF
		# Guests as root, no security labels, console logs to files (no virtlogd).
		cat >"$dir/etc/qemu.conf" <<-'CONF'
			user = "root"
			group = "root"
			dynamic_ownership = 0
			remember_owner = 0
			security_driver = "none"
			stdio_handler = "file"
		CONF
		if [[ -n $seed && -d $seed/cache/qemu/capabilities && ! -d $dir/cache/qemu/capabilities ]]; then
			mkdir -p "$dir/cache/qemu"
			cp -a "$seed/cache/qemu/capabilities" "$dir/cache/qemu/"
		fi
		local d
		for d in /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
			mkdir -p "$d"
		done
		log "starting $role daemon in $dir"
		rm -f "$dir/libvirtd.pid"
		# shellcheck disable=SC2016
		setsid unshare --mount --propagation private -- /bin/sh -c '
			set -e
			mount --bind "$1/etc"   /etc/libvirt
			mount --bind "$1/run"   /run/libvirt
			mount --bind "$1/lib"   /var/lib/libvirt
			mount --bind "$1/cache" /var/cache/libvirt
			mount --bind "$1/log"   /var/log/libvirt
			exec "$2" --pid-file "$3"
		' sh "$dir" "$LIBVIRTD" "$dir/libvirtd.pid" >>"$dir/log/libvirtd.stdout" 2>&1 </dev/null &
	fi
	local deadline=$((SECONDS + 120))
	until timeout 10 virsh -q -c "$uri" version >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			tail -n 15 "$dir/log/libvirtd.log" "$dir/log/libvirtd.stdout" >&2 2>/dev/null || true
			die "$role libvirtd did not answer within 120 s"
		fi
		sleep 0.2
	done
	local pid
	pid=$(daemon_pid "$dir") || die "$role libvirtd answers but its pidfile is missing"
	if ss -Hltnup 2>/dev/null | grep "pid=$pid," >/dev/null; then
		stop "$dir"
		die "$role libvirtd listened on a network socket; stopped it"
	fi
	# A directory pool "default" per daemon (local storage, DIR/lib/images from outside).
	local V=(timeout 30 virsh -q -c "$uri")
	if ! "${V[@]}" pool-info default >/dev/null 2>&1; then
		"${V[@]}" pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
		"${V[@]}" pool-autostart default >/dev/null
	fi
	if ! "${V[@]}" pool-info default 2>/dev/null | grep '^State: *running' >/dev/null; then
		"${V[@]}" pool-start default >/dev/null 2>&1 ||
			"${V[@]}" pool-info default 2>/dev/null | grep '^State: *running' >/dev/null ||
			die "$role pool default does not start"
	fi
	log "$role daemon ready (pid $pid)"
	local p=VMM_TEST_LIBVIRT_
	[[ $role == peer ]] && p=VMM_TEST_LIBVIRT_PEER_
	printf 'export %s=%q\n' \
		"${p}SOCKET" "$sock" \
		"${p}URI" "$uri" \
		"${p}IMAGE_DIR" "$dir/images" \
		"${p}POOL_DIR" "$dir/lib/images" \
		"${p}HOST_UUID" "$uuid" \
		"${p}PIDFILE" "$dir/libvirtd.pid" \
		"${p}LOG_DIR" "$dir/log"
	if [[ $role == primary ]]; then
		printf 'export %s=%q\n' \
			VMM_TEST_LIBVIRT_QEMU_URI "$uri" \
			VMM_TEST_LIBVIRT_TEST_URI "test+unix:///default?socket=$sock" \
			VMM_TEST_LIBVIRT_DOMAIN_TYPE qemu \
			VMM_TEST_LIBVIRT_POOL default
	fi
}

wait_gone() { # pid seconds
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

stop() { # dir
	local dir=$1 pid uri names dom f qpid
	[[ -d $dir ]] || return 0
	dir=$(cd "$dir" && pwd)
	uri="qemu+unix:///system?socket=$dir/run/libvirt-sock"
	if pid=$(daemon_pid "$dir"); then
		# Destroy guests through the daemon so it records them as shut off.
		if names=$(timeout 20 virsh -q -c "$uri" list --name 2>/dev/null); then
			while read -r dom; do
				[[ -n $dom ]] || continue
				timeout 30 virsh -q -c "$uri" destroy "$dom" >/dev/null 2>&1 || log "could not destroy $dom"
			done <<<"$names"
		fi
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_gone "$pid" 20; then
			log "libvirtd pid $pid did not exit; SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			wait_gone "$pid" 5 || log "libvirtd pid $pid is still there"
		fi
	fi
	rm -f "$dir/libvirtd.pid"
	# QEMU processes the daemon left (crash, SIGKILL, failed destroy).
	shopt -s nullglob
	for f in "$dir"/run/qemu/*.pid; do
		qpid=$(tr -dc '0-9' <"$f")
		[[ -n $qpid ]] && kill -0 "$qpid" 2>/dev/null || continue
		[[ $(readlink -f "/proc/$qpid/exe" 2>/dev/null) == */qemu-system-* ]] || continue
		log "ending leftover QEMU pid $qpid"
		kill -TERM "$qpid" 2>/dev/null || true
		wait_gone "$qpid" 10 || kill -KILL "$qpid" 2>/dev/null || true
	done
	log "stopped daemon of $dir"
}

case "${1:-}" in
start)
	[[ $# -ge 3 && ($2 == primary || $2 == peer) ]] || die "usage: $0 start primary|peer DIR [PRIMARY_DIR]"
	start "$2" "$3" "${4:-}"
	;;
stop)
	[[ $# -ge 2 ]] || die "usage: $0 stop DIR"
	stop "$2"
	;;
*)
	echo "usage: $0 start primary|peer DIR [PRIMARY_DIR] | stop DIR" >&2
	exit 2
	;;
esac
