#!/usr/bin/env bash
# testenv.sh start|stop — install and run what vmmkit's integration tests use.
#
#   eval "$(scripts/testenv.sh start)"   # installs missing packages, starts servers,
#                                        # prints export VMM_TEST_...=... lines
#   scripts/testenv.sh stop              # stops exactly what start started
#
# Progress and diagnostics go to stderr; stdout carries only export lines, so
# the output of start can be eval'ed in any POSIX shell.
#
# State (pid files, data directories, logs) lives in VMM_TEST_STATE, by default
# ${TMPDIR:-/tmp}/vmmkit-testenv. Servers listen on loopback or unix sockets only.
set -euo pipefail

state=${VMM_TEST_STATE:-${TMPDIR:-/tmp}/vmmkit-testenv}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Debian packages the tests need, with the command that proves each is present.
# Later subsystems add their servers here; postgres.sh installs PostgreSQL, libvirtd.sh installs
# libvirt and QEMU itself, samba-ad.sh Samba, ldap-utils and Kerberos.
packages=(
	"qemu-utils|command -v qemu-img"
	"libvhdi-utils|command -v vhdiinfo"
	"python3-libvhdi|/usr/bin/python3 -c 'import pyvhdi'"
	# p2v: real file systems and partition tables built in tests, and rsync
	# as the anchor of the incremental-capture benchmark.
	"e2fsprogs|command -v mkfs.ext4 && command -v debugfs && command -v e2fsck"
	"ntfs-3g|command -v mkfs.ntfs && command -v ntfsfix && command -v ntfscat"
	"dosfstools|command -v mkfs.vfat && command -v fsck.vfat"
	"mtools|command -v mcopy"
	"fdisk|command -v sfdisk"
	"gdisk|command -v sgdisk"
	"rsync|command -v rsync"
	# vmm/selfservice: the browser test drives Debian's Chromium headless.
	"chromium|command -v chromium"
)

log() { printf 'testenv: %s\n' "$*" >&2; }

install_missing() {
	local missing=() entry pkg check
	for entry in "${packages[@]}"; do
		pkg=${entry%%|*}
		check=${entry#*|}
		if ! eval "$check" >/dev/null 2>&1 </dev/null; then
			missing+=("$pkg")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		log "missing packages: ${missing[*]} (run as root, or install them yourself)"
		return 1
	fi
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

emit() { printf 'export %s=%q\n' "$1" "$2"; }

start() {
	mkdir -p "$state"
	install_missing
	emit VMM_TEST_STATE "$state"
	emit VMM_TEST_QEMU_IMG "$(command -v qemu-img)"
	emit VMM_TEST_VHDIINFO "$(command -v vhdiinfo)"
	# python3-libvhdi installs its module for Debian's interpreter only; another
	# python3 earlier on PATH (pyenv, venv) cannot import it.
	emit VMM_TEST_PYVHDI_PYTHON /usr/bin/python3
	emit VMM_TEST_CHROMIUM "$(command -v chromium)"
	# hostapi/libvirt: two libvirtd daemons (two "hosts") on unix sockets.
	# Their state folders are short: a socket path must fit in 107 bytes.
	"$here/libvirtd.sh" start primary "$state/lv"
	"$here/libvirtd.sh" start peer "$state/lvp" "$state/lv"
	# discovery: a Samba AD domain controller on loopback (LDAPS, StartTLS,
	# Kerberos) with the test OU tree; its export lines go straight to stdout.
	# VMM_TEST_BENCH_HOSTS=10000 also seeds the benchmark OU (make bench).
	"$here/samba-ad.sh" start "$state/ad"
	# library/s3share: MinIO (built once from the Go module proxy into
	# ~/.cache/vmmkit, run as a separate process) with a bucket per site.
	"$here/minio.sh" start "$state/minio"
	# vmm/store/postgres: a PostgreSQL server (Debian postgresql) on loopback,
	# run as the postgres user; the tests make a database each.
	"$here/postgres.sh" start "$state/pg"
	log "ready (state in $state)"
}

stop() {
	# Servers first (each stop is safe when nothing runs), then our state directory.
	"$here/postgres.sh" stop "$state/pg" || log "could not stop PostgreSQL"
	"$here/minio.sh" stop "$state/minio" || log "could not stop MinIO"
	"$here/samba-ad.sh" stop "$state/ad" || log "could not stop the Samba DC"
	"$here/libvirtd.sh" stop "$state/lvp" || log "could not stop the peer libvirtd"
	"$here/libvirtd.sh" stop "$state/lv" || log "could not stop the libvirtd"
	if [ -d "$state" ]; then
		rm -rf "$state"
	fi
	log "stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
