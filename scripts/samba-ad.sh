#!/usr/bin/env bash
# samba-ad.sh start|stop [STATE_DIR] — a throw-away Samba Active Directory
# domain controller on loopback for the tests and benchmarks of package
# discovery.
#
#   eval "$(scripts/samba-ad.sh start "$state/ad")"   # prints export lines
#   scripts/samba-ad.sh stop "$state/ad"
#
# STATE_DIR defaults to $VMM_TEST_STATE/samba-ad, or ${TMPDIR:-/tmp}/vmmkit-samba-ad.
# Everything (database, config, keys, logs, pidfile) lives there; nothing is
# written outside it except the Debian packages a first run installs. Progress
# goes to stderr; stdout carries only `export VMM_TEST_LDAP_...=...` lines,
# which are also saved in STATE_DIR/env.sh.
#
# start installs missing packages (samba, ldap-utils, krb5-user, ...), picks a
# free loopback address, makes a test CA and server certificate, provisions
# the domain LAB.EXAMPLE.TEST once, seeds the test objects once, and starts
# samba (LDAP, CLDAP and Kerberos only). Running it again is safe and fast.
# stop stops exactly the samba that start started and keeps STATE_DIR.
#
# The test data, under OU=VirtualHosts: nested OUs (HyperV/Redmond/Rack01,
# Rack02, HyperV/Dublin, VirtualServer/Branch Offices, "Staging, Test" with a
# comma, and a plain container CN=Retired), VMM_TEST_HOST_COUNT computers
# (default 1500) named like HVR1-0300 with OS, description, location and
# Hyper-V or Virtual Server SPNs; every 25th host and all of CN=Retired are
# disabled; every 50th (7, 57, ...) is pre-staged without dNSHostName and
# SPNs; every 10th has managedBy. Decoys a discovery must skip: a user and a
# group (whose member lists every host) inside the OU, 20 workstations in
# OU=Workstations and 10 Hyper-V-looking computers in CN=Computers. Users for
# the bind tests in CN=Users: vmm-reader (enabled, exported to a keytab),
# vmm-expired (account expired) and vmm-disabled (disabled); all three have
# the password printed as VMM_TEST_LDAP_USER_PASSWORD. Users and groups of
# two self-service roles, with the same password: vmm-alice (in vmm-dev),
# vmm-bob (in vmm-dev-leads, itself in vmm-dev), vmm-carol (in vmm-qa) and
# vmm-dave (in none); VMM_TEST_LDAP_PORTAL_USERS lists them. vmm-alice is
# also on the distribution list vmm-dist, which is no security group;
# vmm-dave's user principal name is dave.d@<realm>. vmm-load-01 to -50,
# also in vmm-dev, sign in at once in the portal's sign-in benchmark.
#
# With VMM_TEST_BENCH_HOSTS=N (e.g. 10000), start also seeds N computers in
# OU=BenchHosts, a separate OU outside the tests' one (once per state dir;
# about a minute for 10 000), and prints VMM_TEST_LDAP_BENCH_OU.
#
# How this server differs from Windows AD: it does not enforce MaxPageSize
# (1 000 entries a page) or range retrieval (1 500 values), so tests cover
# those paths with a fake server; simple binds need TLS; its own certificate
# is unusable from Go (hence our CA); dc1.<realm> is not in DNS, so clients
# connect to the IP address and pass the SPN and krb5.conf explicitly.
#
# Tunables (environment):
#   VMM_TEST_HOST_COUNT        computers under the hosts OU (1500)
#   VMM_TEST_BENCH_HOSTS       computers under OU=BenchHosts (0: none)
#   VMM_SAMBA_REALM            Kerberos realm / DNS domain (LAB.EXAMPLE.TEST)
#   VMM_SAMBA_DOMAIN           NetBIOS domain name (LAB)
#   VMM_SAMBA_ADMIN_PASSWORD   Administrator password (a fixed test password)
#   VMM_SAMBA_STRONG_AUTH      "ldap server require strong auth":
#                              allow_sasl_over_tls (default), yes, or no
#   VMM_SAMBA_ADDR             loopback address to bind (default: 127.0.0.1,
#                              or the first free 127.0.0.N if 389 is taken)
#   VMM_SAMBA_START_TIMEOUT    seconds to wait for LDAP to answer (90)
set -euo pipefail

log() { printf '[samba-ad] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

now_ms() { date +%s%3N; }
since() { local d=$(( $(now_ms) - $1 )); printf '%d.%ds' $((d / 1000)) $(((d % 1000) / 100)); }
T_START=$(now_ms)

CMD=${1:-}
case $CMD in start|stop) ;; *) echo "usage: $0 start|stop [STATE_DIR]" >&2; exit 2;; esac
if [[ -n ${VMM_TEST_STATE:-} ]]; then DEFAULT_STATE=$VMM_TEST_STATE/samba-ad; else DEFAULT_STATE=${TMPDIR:-/tmp}/vmmkit-samba-ad; fi
STATE=${2:-$DEFAULT_STATE}

# ---------------------------------------------------------------- stop
do_stop() {
  if [[ ! -d $STATE ]]; then
    log "no state directory $STATE; nothing to stop"
    return 0
  fi
  STATE=$(cd "$STATE" && pwd)
  PIDFILE="$STATE/samba.pid"
  # samba rewrites its command line, so check the executable and samba's own
  # pidfile (written into STATE/run by the config of the start script).
  is_ours() {
    local pid=$1 own
    kill -0 "$pid" 2>/dev/null || return 1
    [[ $(readlink -f "/proc/$pid/exe" 2>/dev/null) == "$(readlink -f "$(command -v samba || echo /usr/sbin/samba)")" ]] || return 1
    if [[ -s $STATE/run/samba.pid ]]; then
      own=$(tr -dc '0-9' < "$STATE/run/samba.pid")
      [[ $own == "$pid" ]] || return 1
    fi
    return 0
  }

  local pid addr
  if [[ -s $PIDFILE ]]; then
    pid=$(cat "$PIDFILE")
    if [[ $pid =~ ^[0-9]+$ ]] && is_ours "$pid"; then
      log "stopping samba (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do
        is_ours "$pid" || break
        sleep 0.2
      done
      if is_ours "$pid"; then
        log "samba did not exit after 20s; killing its process group"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      fi
      # Children (ldap, kdc workers) are in the same process group; give them
      # a moment to follow the master out.
      for _ in $(seq 1 50); do
        ps -o pid= -g "$pid" >/dev/null 2>&1 || break
        sleep 0.1
      done
    else
      log "pidfile names no running samba of this state dir"
    fi
    rm -f "$PIDFILE"
  else
    log "no pidfile; nothing to stop"
  fi

  if [[ -s $STATE/addr-added ]]; then
    addr=$(cat "$STATE/addr-added")
    ip addr del "$addr/32" dev lo 2>/dev/null || true
    rm -f "$STATE/addr-added"
    log "removed loopback address $addr"
  fi
}

if [[ $CMD == stop ]]; then
  do_stop
  exit 0
fi

# ---------------------------------------------------------------- start
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)

REALM=${VMM_SAMBA_REALM:-LAB.EXAMPLE.TEST}
REALM=${REALM^^}
DNSDOMAIN=${REALM,,}
DOMAIN=${VMM_SAMBA_DOMAIN:-LAB}
ADMINPASS=${VMM_SAMBA_ADMIN_PASSWORD:-VmmTest#Passw0rd}
USERPASS='VmmReader#Passw0rd1'
HOSTS=${VMM_TEST_HOST_COUNT:-1500}
BENCH_HOSTS=${VMM_TEST_BENCH_HOSTS:-0}
STRONG_AUTH=${VMM_SAMBA_STRONG_AUTH:-allow_sasl_over_tls}
START_TIMEOUT=${VMM_SAMBA_START_TIMEOUT:-90}
DCNAME=dc1
DCFQDN="$DCNAME.$DNSDOMAIN"
BASEDN=$(printf 'DC=%s' "${DNSDOMAIN//./,DC=}")
HOSTS_OU="OU=VirtualHosts,$BASEDN"
BENCH_OU="OU=BenchHosts,$BASEDN"

SAMBA_DIR="$STATE/samba"
CONF="$STATE/smb.conf"
PIDFILE="$STATE/samba.pid"
KRB5CONF="$STATE/krb5.conf"
KEYTAB="$STATE/vmm-reader.keytab"
TLSDIR="$STATE/tls"
LOGDIR="$STATE/log"

[[ $HOSTS =~ ^[0-9]+$ ]] || die "VMM_TEST_HOST_COUNT must be a number"
[[ $BENCH_HOSTS =~ ^[0-9]+$ ]] || die "VMM_TEST_BENCH_HOSTS must be a number"
case $STRONG_AUTH in no|yes|allow_sasl_over_tls) ;; *) die "bad VMM_SAMBA_STRONG_AUTH=$STRONG_AUTH";; esac
[[ $(id -u) -eq 0 ]] || die "must run as root (binds port 389/636/88 and may install packages)"

# ---------------------------------------------------------------- packages
PKGS=(samba samba-ad-dc samba-ad-provision samba-dsdb-modules winbind
      python3-samba krb5-user ldap-utils openssl iproute2)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  # Keep the packages' own services (smbd, nmbd, samba-ad-dc) from being
  # started by the install: they would listen on every interface.
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
      install -y --no-install-recommends "${missing[@]}" >&2
  }
  if ! apt_install; then
    log "install failed; running apt-get update and retrying"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update >&2
    apt_install || { ((made_policy)) && rm -f /usr/sbin/policy-rc.d; die "apt-get install failed"; }
  fi
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
fi

# ---------------------------------------------------------------- helpers
# samba rewrites its command line ("samba: root process"), so a pid is
# recognised by its executable and by samba's own pidfile in STATE/run.
samba_running() {
  [[ -s $PIDFILE ]] || return 1
  local pid own; pid=$(cat "$PIDFILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  [[ $(readlink -f "/proc/$pid/exe" 2>/dev/null) == "$(readlink -f "$(command -v samba)")" ]] || return 1
  if [[ -s $STATE/run/samba.pid ]]; then
    own=$(tr -dc '0-9' < "$STATE/run/samba.pid")
    [[ $own == "$pid" ]] || return 1
  fi
  return 0
}

# Is anything listening on ADDR:PORT (or on a wildcard address) for tcp/udp?
port_taken() {
  local proto=$1 addr=${2//./\\.} port=$3 flag=-Hltn
  [[ $proto == udp ]] && flag=-Hlun
  ss "$flag" "sport = :$port" 2>/dev/null | awk '{print $4}' |
    grep -qE "^($addr|0\.0\.0\.0|\*|\[::\]|\[::ffff:$addr\]):$port\$"
}
addr_free() {
  local a=$1 p
  for p in 389 636 3268 3269 88 464; do port_taken tcp "$a" "$p" && return 1; done
  for p in 389 88 464; do port_taken udp "$a" "$p" && return 1; done
  return 0
}

ldap_up() {
  ldapsearch -x -LLL -o nettimeout=2 -H "ldap://$ADDR" -b '' -s base defaultNamingContext >/dev/null 2>&1 &&
  LDAPTLS_CACERT="$TLSDIR/ca.pem" ldapsearch -x -LLL -o nettimeout=2 -H "ldaps://$ADDR" -b '' -s base defaultNamingContext >/dev/null 2>&1
}

emit_env() {
  local kv=(
      VMM_TEST_LDAP_URL "ldap://$ADDR:389"
      VMM_TEST_LDAP_LDAPS_URL "ldaps://$ADDR:636"
      VMM_TEST_LDAP_GC_URL "ldap://$ADDR:3268"
      VMM_TEST_LDAP_CA_CERT "$TLSDIR/ca.pem"
      VMM_TEST_LDAP_SERVER_NAME "$DCFQDN"
      VMM_TEST_LDAP_BASE_DN "$BASEDN"
      VMM_TEST_LDAP_HOSTS_OU "$HOSTS_OU"
      VMM_TEST_LDAP_BIND_DN "CN=Administrator,CN=Users,$BASEDN"
      VMM_TEST_LDAP_BIND_UPN "Administrator@$DNSDOMAIN"
      VMM_TEST_LDAP_BIND_PASSWORD "$ADMINPASS"
      VMM_TEST_LDAP_USER_DN "CN=vmm-reader,CN=Users,$BASEDN"
      VMM_TEST_LDAP_USER_UPN "vmm-reader@$DNSDOMAIN"
      VMM_TEST_LDAP_EXPIRED_DN "CN=vmm-expired,CN=Users,$BASEDN"
      VMM_TEST_LDAP_DISABLED_DN "CN=vmm-disabled,CN=Users,$BASEDN"
      VMM_TEST_LDAP_USER_PASSWORD "$USERPASS"
      VMM_TEST_LDAP_PORTAL_USERS "vmm-alice vmm-bob vmm-carol vmm-dave"
      VMM_TEST_LDAP_KEYTAB "$KEYTAB"
      VMM_TEST_LDAP_REALM "$REALM"
      VMM_TEST_LDAP_KRB5_CONFIG "$KRB5CONF"
      VMM_TEST_LDAP_KDC "$ADDR:88"
      VMM_TEST_LDAP_SPN "ldap/$DCFQDN"
  )
  if (( BENCH_HOSTS > 0 )); then kv+=(VMM_TEST_LDAP_BENCH_OU "$BENCH_OU"); fi
  local i
  for ((i = 0; i < ${#kv[@]}; i += 2)); do
    # single-quoted, so the file can be sourced by any POSIX shell
    printf "export %s='%s'\n" "${kv[i]}" "${kv[i+1]//\'/\'\\\'\'}"
  done > "$STATE/env.sh"
  cat "$STATE/env.sh"
}

# ---------------------------------------------------------------- already up?
if samba_running && [[ -s $STATE/addr ]]; then
  ADDR=$(cat "$STATE/addr")
  if [[ $(cat "$STATE/seeded" 2>/dev/null) == "$HOSTS" && $(cat "$STATE/portal-users" 2>/dev/null) == 5 && $(cat "$STATE/seeded-bench" 2>/dev/null || echo 0) -ge $BENCH_HOSTS ]] && ldap_up; then
    log "samba already running from $STATE (pid $(cat "$PIDFILE")) on $ADDR"
    emit_env
    exit 0
  fi
  log "samba is running but the state does not match the request; restarting it"
  do_stop >&2
fi

# ---------------------------------------------------------------- address
if [[ -n ${VMM_SAMBA_ADDR:-} ]]; then
  ADDR=$VMM_SAMBA_ADDR
elif [[ -s $STATE/addr ]] && addr_free "$(cat "$STATE/addr")"; then
  ADDR=$(cat "$STATE/addr")
else
  ADDR=
  for n in 1 $(seq 2 30); do
    if addr_free "127.0.0.$n"; then ADDR=127.0.0.$n; break; fi
  done
  [[ -n $ADDR ]] || die "ports 389/636/88 are taken on every 127.0.0.N tried (a server bound to 0.0.0.0?)"
fi
[[ $ADDR =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "VMM_SAMBA_ADDR must be a 127.x.y.z address"
addr_free "$ADDR" || die "$ADDR already has a listener on an AD port"
# Samba only binds addresses that an interface carries; 127.0.0.1 is on lo
# already, other loopback addresses are added to lo (and removed on stop).
if ! ip -4 -o addr show dev lo | grep -qF " $ADDR/"; then
  ip addr add "$ADDR/32" dev lo
  echo "$ADDR" > "$STATE/addr-added"
fi
echo "$ADDR" > "$STATE/addr"
log "using address $ADDR"

# ---------------------------------------------------------------- TLS
# Samba's self-generated certificate has no subjectAltName and a negative
# serial number; Go's crypto/x509 refuses both, so we make our own CA.
mkdir -p "$TLSDIR"
if [[ ! -s $TLSDIR/ca.pem || ! -s $TLSDIR/ca.key ]]; then
  log "creating test CA"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -keyout "$TLSDIR/ca.key" -out "$TLSDIR/ca.pem" -subj "/O=VMM test/CN=VMM test CA $REALM" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  rm -f "$TLSDIR/cert.pem"
fi
if [[ ! -s $TLSDIR/cert.pem ]] || ! openssl x509 -in "$TLSDIR/cert.pem" -noout -ext subjectAltName 2>/dev/null | grep -qF "IP Address:$ADDR,"; then
  log "creating server certificate for $DCFQDN / $ADDR"
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$TLSDIR/key.pem" -out "$TLSDIR/server.csr" \
    -subj "/O=VMM test/CN=$DCFQDN" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=DNS:$DCFQDN,DNS:$DNSDOMAIN,DNS:$DCNAME,DNS:localhost,IP:$ADDR,IP:::1" > "$TLSDIR/server.ext"
  openssl x509 -req -sha256 -days 3650 -in "$TLSDIR/server.csr" -CA "$TLSDIR/ca.pem" -CAkey "$TLSDIR/ca.key" \
    -set_serial "0x$(openssl rand -hex 8)" -extfile "$TLSDIR/server.ext" -out "$TLSDIR/cert.pem" 2>/dev/null
fi
chmod 600 "$TLSDIR/key.pem" "$TLSDIR/ca.key"

# ---------------------------------------------------------------- config
mkdir -p "$LOGDIR" "$STATE/run"
write_conf() {
  cat > "$CONF" <<EOF
# Generated by samba-ad.sh; rewritten on every start.
[global]
	netbios name = ${DCNAME^^}
	workgroup = $DOMAIN
	realm = $REALM
	server role = active directory domain controller
	interfaces = $ADDR
	bind interfaces only = yes
	server services = ldap, cldap, kdc
	private dir = $SAMBA_DIR/private
	lock directory = $SAMBA_DIR
	state directory = $SAMBA_DIR/state
	cache directory = $SAMBA_DIR/cache
	binddns dir = $SAMBA_DIR/bind-dns
	pid directory = $STATE/run
	ncalrpc dir = $STATE/run/ncalrpc
	winbindd socket directory = $STATE/run/winbindd
	ntp signd socket directory = $STATE/run/ntp_signd
	log file = $LOGDIR/samba.log
	max log size = 10000
	log level = 1
	tls enabled = yes
	tls keyfile = $TLSDIR/key.pem
	tls certfile = $TLSDIR/cert.pem
	tls cafile = $TLSDIR/ca.pem
	ldap server require strong auth = $STRONG_AUTH
	prefork children = 2
EOF
}

cat > "$KRB5CONF" <<EOF
[libdefaults]
	default_realm = $REALM
	dns_lookup_realm = false
	dns_lookup_kdc = false
	rdns = false
	dns_canonicalize_hostname = false
	udp_preference_limit = 0

[realms]
	$REALM = {
		kdc = $ADDR:88
		admin_server = $ADDR
		default_domain = $DNSDOMAIN
	}

[domain_realm]
	.$DNSDOMAIN = $REALM
	$DNSDOMAIN = $REALM
EOF

# ---------------------------------------------------------------- provision
if [[ -s $STATE/seeded && $(cat "$STATE/seeded") != "$HOSTS" ]]; then
  log "state was seeded with $(cat "$STATE/seeded") hosts, $HOSTS requested: provisioning anew"
  rm -rf "$SAMBA_DIR" "$STATE/seeded" "$STATE/seeded-bench" "$STATE/portal-users" "$KEYTAB"
fi
if [[ ! -s $SAMBA_DIR/private/sam.ldb ]]; then
  rm -rf "$SAMBA_DIR" "$STATE/seeded" "$STATE/seeded-bench" "$STATE/portal-users" "$KEYTAB"
  mkdir -p "$SAMBA_DIR"
  log "provisioning $REALM into $SAMBA_DIR"
  t0=$(now_ms)
  # -s /dev/null: do not inherit anything from the system smb.conf
  samba-tool domain provision -s /dev/null --targetdir="$SAMBA_DIR" \
    --realm="$REALM" --domain="$DOMAIN" --server-role=dc --dns-backend=NONE \
    --host-name="$DCNAME" --adminpass="$ADMINPASS" \
    --option="interfaces = $ADDR" --option="bind interfaces only = yes" \
    > "$LOGDIR/provision.log" 2>&1 || { tail -20 "$LOGDIR/provision.log" >&2; die "provision failed"; }
  write_conf
  # The admin password must not expire while a state dir is reused.
  samba-tool user setexpiry Administrator --noexpiry -s "$CONF" -H "$SAMBA_DIR/private/sam.ldb" >> "$LOGDIR/provision.log" 2>&1
  # The SPNs (ldap/dc1..., GC/...) are normally added by the dnsupdate
  # service, which this setup does not run.
  samba_spnupdate -s "$CONF" >> "$LOGDIR/provision.log" 2>&1 || die "samba_spnupdate failed"
  log "provisioned in $(since "$t0")"
fi
write_conf

# ---------------------------------------------------------------- seed
if [[ $(cat "$STATE/seeded" 2>/dev/null) != "$HOSTS" ]]; then
  log "seeding $HOSTS computer objects under $HOSTS_OU"
  t0=$(now_ms)
  /usr/bin/python3 - "$CONF" "$SAMBA_DIR/private/sam.ldb" "$BASEDN" "$DNSDOMAIN" "$HOSTS" > "$LOGDIR/seed.log" 2>&1 <<'PYEOF' || { tail -20 "$LOGDIR/seed.log" >&2; die "seeding failed"; }
import sys
from samba.param import LoadParm
from samba.samdb import SamDB
from samba.auth import system_session

conf, url, base, dnsdomain, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
hosts_ou = "OU=VirtualHosts," + base
admin_dn = "CN=Administrator,CN=Users," + base

# (RDNs below the hosts OU, weight, name prefix, host kind)
layout = [
    ([], 1, "VH", "hyperv"),
    (["OU=HyperV"], 1, "HV", "hyperv"),
    (["OU=Redmond", "OU=HyperV"], 2, "HVRED", "hyperv"),
    (["OU=Rack01", "OU=Redmond", "OU=HyperV"], 4, "HVR1", "hyperv"),
    (["OU=Rack02", "OU=Redmond", "OU=HyperV"], 4, "HVR2", "hyperv"),
    (["OU=Dublin", "OU=HyperV"], 3, "HVDUB", "hyperv"),
    (["OU=VirtualServer"], 2, "VS", "vs2005"),
    (["OU=Branch Offices", "OU=VirtualServer"], 2, "VSBR", "vs2005"),
    (["OU=Staging\\, Test"], 1, "STG", "hyperv"),
    (["CN=Retired"], 1, "OLD", "vs2005"),
]
systems = {
    "hyperv": [("Windows Server 2008 Enterprise", "6.0 (6001)", "Service Pack 1"),
               ("Windows Server 2008 Datacenter", "6.0 (6002)", "Service Pack 2"),
               ("Windows Server 2008 R2 Datacenter", "6.1 (7601)", "Service Pack 1"),
               ("Hyper-V Server 2008 R2", "6.1 (7601)", "Service Pack 1")],
    "vs2005": [("Windows Server 2003", "5.2 (3790)", "Service Pack 2"),
               ("Windows Server 2003 R2 Enterprise Edition", "5.2 (3790)", "Service Pack 2")],
}

chunks = []
def add(dn, attrs):
    lines = ["dn: " + dn]
    for k, v in attrs:
        lines.append("%s: %s" % (k, v))
    chunks.append("\n".join(lines) + "\n")

def dn_below(rdns):
    return ",".join(rdns + [hosts_ou])

add(hosts_ou, [("objectClass", "organizationalUnit"),
               ("description", "Virtual machine hosts managed by VMM")])
made = set()
for rdns, _, _, _ in layout:
    for i in range(len(rdns) - 1, -1, -1):
        key = tuple(rdns[i:])
        if key in made:
            continue
        made.add(key)
        oc = "container" if rdns[i].startswith("CN=") else "organizationalUnit"
        add(dn_below(list(key)), [("objectClass", oc)])

total_w = sum(w for _, w, _, _ in layout)
counts = [n * w // total_w for _, w, _, _ in layout]
counts[0] += n - sum(counts)
seq = 0
all_hosts = []
for (rdns, _, prefix, kind), cnt in zip(layout, counts):
    for _ in range(cnt):
        seq += 1
        name = "%s-%04d" % (prefix, seq)
        fqdn = (name + "." + dnsdomain).lower()
        osn, osv, ossp = systems[kind][seq % len(systems[kind])]
        retired = rdns == ["CN=Retired"]
        uac = 4098 if (seq % 25 == 0 or retired) else 4096  # 0x2 = ACCOUNTDISABLE
        attrs = [("objectClass", "computer"), ("sAMAccountName", name + "$"),
                 ("userAccountControl", str(uac)),
                 ("operatingSystem", osn), ("operatingSystemVersion", osv),
                 ("operatingSystemServicePack", ossp),
                 ("description", "%s host %d" % ("Hyper-V" if kind == "hyperv" else "Virtual Server 2005 R2", seq)),
                 ("location", "Building %d/Row %d" % (seq % 7 + 1, seq % 13 + 1))]
        if seq % 50 != 7:  # every 50th host is pre-staged: no DNS name, no SPNs
            attrs += [("dNSHostName", fqdn),
                      ("servicePrincipalName", "HOST/" + name),
                      ("servicePrincipalName", "HOST/" + fqdn)]
            if kind == "hyperv":
                attrs += [("servicePrincipalName", "Microsoft Virtual System Migration Service/" + fqdn),
                          ("servicePrincipalName", "Microsoft Virtual Console Service/" + fqdn)]
                if osv.startswith("6.1"):
                    attrs.append(("servicePrincipalName", "Hyper-V Replica Service/" + fqdn))
            else:
                attrs.append(("servicePrincipalName", "Microsoft Virtual Server/" + fqdn))
        if seq % 10 == 0:
            attrs.append(("managedBy", admin_dn))
        dn = "CN=%s,%s" % (name, dn_below(rdns))
        add(dn, attrs)
        all_hosts.append(dn)

# Decoys: computers outside the hosts OU and non-computers inside it.
add("OU=Workstations," + base, [("objectClass", "organizationalUnit")])
for j in range(1, 21):
    name = "WS-%04d" % j
    fqdn = (name + "." + dnsdomain).lower()
    add("CN=%s,OU=Workstations,%s" % (name, base),
        [("objectClass", "computer"), ("sAMAccountName", name + "$"), ("userAccountControl", "4096"),
         ("dNSHostName", fqdn), ("operatingSystem", "Windows Vista Business"),
         ("operatingSystemVersion", "6.0 (6002)"), ("servicePrincipalName", "HOST/" + fqdn)])
for j in range(1, 11):
    name = "STRAY-HV%02d" % j
    fqdn = (name + "." + dnsdomain).lower()
    add("CN=%s,CN=Computers,%s" % (name, base),
        [("objectClass", "computer"), ("sAMAccountName", name + "$"), ("userAccountControl", "4096"),
         ("dNSHostName", fqdn), ("operatingSystem", "Windows Server 2008 R2 Datacenter"),
         ("operatingSystemVersion", "6.1 (7601)"), ("servicePrincipalName", "HOST/" + fqdn),
         ("servicePrincipalName", "Microsoft Virtual Console Service/" + fqdn)])
add("CN=svc-vmm," + hosts_ou, [("objectClass", "user"), ("sAMAccountName", "svc-vmm"),
                               ("userAccountControl", "514"),
                               ("description", "user object inside the hosts OU (not a host)")])
# A group holding every host: more than 1500 values once N > 1500, which is
# where Windows AD starts range retrieval (MaxValRange).
group = [("objectClass", "group"), ("sAMAccountName", "AllVirtualHosts"),
         ("description", "all seeded hosts")]
group += [("member", dn) for dn in all_hosts]
add("CN=AllVirtualHosts," + hosts_ou, group)

lp = LoadParm()
lp.load(conf)
db = SamDB(url=url, lp=lp, session_info=system_session())
db.transaction_start()
try:
    for c in chunks:
        db.add_ldif(c)
except Exception:
    db.transaction_cancel()
    raise
db.transaction_commit()
print("added %d objects (%d hosts)" % (len(chunks), len(all_hosts)))
PYEOF
  echo "$HOSTS" > "$STATE/seeded"
  log "seeded in $(since "$t0") ($(tail -1 "$LOGDIR/seed.log"))"
fi

# ---------------------------------------------------------------- portal users
# Users and groups of two self-service roles (vmm/selfservice): vmm-dev
# (vmm-alice directly, vmm-bob through the nested group vmm-dev-leads) and
# vmm-qa (vmm-carol); vmm-dave is in no portal group. Same password as the
# bind-test users.
if [[ $(cat "$STATE/portal-users" 2>/dev/null) != 5 ]]; then
  log "creating portal users vmm-alice, vmm-bob, vmm-carol, vmm-dave and groups vmm-dev, vmm-dev-leads, vmm-qa"
  /usr/bin/python3 - "$CONF" "$SAMBA_DIR/private/sam.ldb" "$USERPASS" > "$LOGDIR/portal-users.log" 2>&1 <<'PYEOF' || { tail -20 "$LOGDIR/portal-users.log" >&2; die "creating portal users failed"; }
import sys
from samba.param import LoadParm
from samba.samdb import SamDB
from samba.auth import system_session
conf, url, password = sys.argv[1:4]
lp = LoadParm()
lp.load(conf)
db = SamDB(url=url, lp=lp, session_info=system_session())
for name in ("vmm-alice", "vmm-bob", "vmm-carol", "vmm-dave"):
    if not db.search(expression="(sAMAccountName=%s)" % name):
        db.newuser(name, password, useusernameascn=True)
    db.setexpiry("(sAMAccountName=%s)" % name, 0, no_expiry_req=True)
from samba.dsdb import GTYPE_DISTRIBUTION_GLOBAL_GROUP
for group in ("vmm-dev", "vmm-dev-leads", "vmm-qa"):
    if not db.search(expression="(sAMAccountName=%s)" % group):
        db.newgroup(group)
# A distribution list (not a security group) holding vmm-alice: never a
# group of a signed-in user.
if not db.search(expression="(sAMAccountName=vmm-dist)"):
    db.newgroup("vmm-dist", grouptype=GTYPE_DISTRIBUTION_GLOBAL_GROUP)
# vmm-dave's user principal name is not his account name, as is common.
dn = db.search(expression="(sAMAccountName=vmm-dave)", attrs=["dn"])[0].dn
db.modify_ldif("dn: %s\nchangetype: modify\nreplace: userPrincipalName\nuserPrincipalName: dave.d@%s\n" % (dn, lp.get("realm").lower()))
# 50 more members of vmm-dev for the sign-in benchmark.
load = ["vmm-load-%02d" % i for i in range(1, 51)]
for name in load:
    if not db.search(expression="(sAMAccountName=%s)" % name):
        db.newuser(name, password, useusernameascn=True)
        db.setexpiry("(sAMAccountName=%s)" % name, 0, no_expiry_req=True)
for group, members in (("vmm-dev", ["vmm-alice", "vmm-dev-leads"] + load),
                       ("vmm-dev-leads", ["vmm-bob"]),
                       ("vmm-qa", ["vmm-carol"]),
                       ("vmm-dist", ["vmm-alice"])):
    for member in members:  # one at a time: one already there fails the call
        try:
            db.add_remove_group_members(group, [member], add_members_operation=True)
        except Exception as e:  # already a member on a re-run
            if "already" not in str(e).lower():
                raise
print("portal users ready")
PYEOF
  echo 5 > "$STATE/portal-users"
fi

# ---------------------------------------------------------------- bind-test users
if [[ ! -s $STATE/users || ! -s $KEYTAB ]]; then
  log "creating bind-test users vmm-reader, vmm-expired, vmm-disabled"
  /usr/bin/python3 - "$CONF" "$SAMBA_DIR/private/sam.ldb" "$USERPASS" > "$LOGDIR/users.log" 2>&1 <<'PYEOF' || { tail -20 "$LOGDIR/users.log" >&2; die "creating users failed"; }
import sys
from samba.param import LoadParm
from samba.samdb import SamDB
from samba.auth import system_session
conf, url, password = sys.argv[1:4]
lp = LoadParm()
lp.load(conf)
db = SamDB(url=url, lp=lp, session_info=system_session())
for name in ("vmm-reader", "vmm-expired", "vmm-disabled"):
    if not db.search(expression="(sAMAccountName=%s)" % name):
        db.newuser(name, password, useusernameascn=True)
    db.setexpiry("(sAMAccountName=%s)" % name, 0, no_expiry_req=True)
dn = db.search(expression="(sAMAccountName=vmm-expired)", attrs=["dn"])[0].dn
# accountExpires in 2001: the account has expired, the password is still good.
db.modify_ldif("dn: %s\nchangetype: modify\nreplace: accountExpires\naccountExpires: 126227808000000000\n" % dn)
db.disable_account("(sAMAccountName=vmm-disabled)")
print("users ready")
PYEOF
  rm -f "$KEYTAB"
  samba-tool domain exportkeytab "$KEYTAB" --principal="vmm-reader@$REALM" -s "$CONF" >> "$LOGDIR/users.log" 2>&1 ||
    { tail -20 "$LOGDIR/users.log" >&2; die "exporting the keytab failed"; }
  chmod 600 "$KEYTAB"
  echo done > "$STATE/users"
fi

# ---------------------------------------------------------------- bench hosts
if (( BENCH_HOSTS > $(cat "$STATE/seeded-bench" 2>/dev/null || echo 0) )); then
  log "seeding $BENCH_HOSTS computer objects under $BENCH_OU (benchmark)"
  t0=$(now_ms)
  /usr/bin/python3 - "$CONF" "$SAMBA_DIR/private/sam.ldb" "$BASEDN" "$DNSDOMAIN" "$BENCH_HOSTS" > "$LOGDIR/seed-bench.log" 2>&1 <<'PYEOF' || { tail -20 "$LOGDIR/seed-bench.log" >&2; die "seeding the benchmark hosts failed"; }
import sys
import ldb
from samba.param import LoadParm
from samba.samdb import SamDB
from samba.auth import system_session
conf, url, base, dnsdomain, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ou = "OU=BenchHosts," + base
lp = LoadParm()
lp.load(conf)
db = SamDB(url=url, lp=lp, session_info=system_session())
have = set()
if db.search(base=base, scope=ldb.SCOPE_ONELEVEL, expression="(ou=BenchHosts)"):
    for m in db.search(base=ou, scope=ldb.SCOPE_SUBTREE, expression="(objectCategory=computer)", attrs=["cn"]):
        have.add(str(m["cn"][0]))
else:
    db.add_ldif("dn: %s\nobjectClass: organizationalUnit\n" % ou)
racks = ["OU=Rack%02d,%s" % (r, ou) for r in range(1, 11)]
for r in racks:
    if not db.search(base=ou, scope=ldb.SCOPE_ONELEVEL, expression="(%s)" % r.split(",")[0]):
        db.add_ldif("dn: %s\nobjectClass: organizationalUnit\n" % r)
# Commit every 500 hosts: one huge transaction is much slower, and an
# interrupted run keeps what it added (the next run adds only the rest).
added = 0
db.transaction_start()
try:
    for seq in range(1, n + 1):
        name = "BH-%05d" % seq
        if name in have:
            continue
        fqdn = (name + "." + dnsdomain).lower()
        uac = 4098 if seq % 25 == 0 else 4096
        db.add_ldif("\n".join([
            "dn: CN=%s,%s" % (name, racks[seq % len(racks)]),
            "objectClass: computer",
            "sAMAccountName: %s$" % name,
            "userAccountControl: %d" % uac,
            "dNSHostName: " + fqdn,
            "operatingSystem: Windows Server 2008 R2 Datacenter",
            "operatingSystemVersion: 6.1 (7601)",
            "operatingSystemServicePack: Service Pack 1",
            "description: benchmark host %d" % seq,
            "location: Hall %d" % (seq % 5 + 1),
            "servicePrincipalName: HOST/" + fqdn,
            "servicePrincipalName: Microsoft Virtual System Migration Service/" + fqdn,
            "servicePrincipalName: Microsoft Virtual Console Service/" + fqdn,
        ]) + "\n")
        added += 1
        if added % 500 == 0:
            db.transaction_commit()
            print("added %d" % added, flush=True)
            db.transaction_start()
except Exception:
    db.transaction_cancel()
    raise
db.transaction_commit()
print("added %d benchmark hosts" % added)
PYEOF
  echo "$BENCH_HOSTS" > "$STATE/seeded-bench"
  log "seeded the benchmark hosts in $(since "$t0") ($(tail -1 "$LOGDIR/seed-bench.log"))"
fi

# ---------------------------------------------------------------- start
log "starting samba"
t0=$(now_ms)
rm -f "$PIDFILE" "$STATE/run/samba.pid"
setsid samba -s "$CONF" --foreground --no-process-group >> "$LOGDIR/samba.stdout" 2>&1 < /dev/null &
echo $! > "$PIDFILE"
deadline=$(( $(date +%s) + START_TIMEOUT ))
until ldap_up; do
  if ! samba_running; then
    tail -20 "$LOGDIR/samba.log" "$LOGDIR/samba.stdout" >&2 2>/dev/null || true
    die "samba exited during start-up"
  fi
  if (( $(date +%s) >= deadline )); then
    tail -20 "$LOGDIR/samba.log" >&2 2>/dev/null || true
    die "LDAP did not answer within ${START_TIMEOUT}s"
  fi
  sleep 0.2
done
log "LDAP and LDAPS answer on $ADDR after $(since "$t0") (pid $(cat "$PIDFILE"))"

# Refuse to go on if samba (any process of its session) listens outside loopback.
spids=$(ps -o pid= --sid "$(cat "$PIDFILE")" | tr -d ' ' | paste -sd'|')
if ss -Hltnup 2>/dev/null | grep -E "pid=($spids)," | awk '{print $5}' | grep -vqE '^(127\.|\[::1\]:)'; then
  do_stop >&2
  die "samba listened on a non-loopback address; stopped it"
fi

log "ready in $(since "$T_START") total"
emit_env
