#!/bin/sh
# deps.sh - install the Debian packages shmbus needs to build and test.
# Checks with dpkg-query; installs only what is missing (apt-get update
# first). Not root: prints the exact command and fails.
set -eu

PKGS="$*"
missing=""
for p in $PKGS; do
	st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$st" = "installed" ] || missing="$missing $p"
done
[ -n "$missing" ] || exit 0

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" != 0 ]; then
	echo "shmbus: missing Debian packages:$missing" >&2
	echo "shmbus: run as root:  $cmd" >&2
	exit 1
fi
echo "  DEPS   installing:$missing"
apt-get update -q >/dev/null
# Services the packages bring (rabbitmq-server's broker) are not started
# by this install: the tests and benchmarks run private ones. A
# policy-rc.d of the machine's own is left as it is.
policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
	policy=/usr/sbin/policy-rc.d
	printf '#!/bin/sh\nexit 101\n' > "$policy"
	chmod 0755 "$policy"
	trap 'rm -f "$policy"' EXIT INT TERM
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
