#!/bin/sh
# bench_peers.sh - shmbus-bench-peers, from a short run (--quick --reps 2,
# every transport; about 20 s on 2 CPUs), under a timeout:
#  - it exits 0, its stdout is the Markdown report alone (progress on
#    stderr);
#  - every row (each shmbus flavour, raw ring, pipe, socketpair, ZeroMQ,
#    Redis, iceoryx) has measured cells of the form "median [min-max]"
#    at both sizes; the peers without a busy-poll mode say n/a there;
#    a finding line for each size and mode;
#  - the PNGs (latency, throughput, CDF) exist and are PNGs;
#  - the redis-server and iox-roudi it started are gone afterwards, and
#    so are RouDi's shared memory and its temporary directories.
# The packages (make deps-peers) missing: a skip, but a failure under
# CI=true, as is any failing peer. Environment: B (build dir), MAKE, CI.
# The last line is "N passed, N failed".
set -u

B=${B:-build}
MAKE=${MAKE:-make}
PBENCH=$B/bin/shmbus-bench-peers
passed=0
failed=0
tmp=$(mktemp -d "${SHMBUS_TEST_TMP:-/tmp}/shmbus-bench-peers-test-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

unset SHMBUS_SOCKET

missing=""
for c in redis-server iox-roudi gnuplot; do
	command -v "$c" > /dev/null || missing="$missing $c"
done
for h in zmq.h hiredis/hiredis.h; do
	[ -e "/usr/include/$h" ] || missing="$missing $h"
done
if [ -n "$missing" ]; then
	case ${CI:-} in
	true|1|yes)
		bad "missing:$missing (make deps-peers)"
		echo "$passed passed, $failed failed"
		exit 1 ;;
	esac
	echo "skip: missing:$missing (make deps-peers)"
	echo "0 passed, 0 failed"
	exit 0
fi

if timeout -k 5 300 $MAKE -s B="$B" bench-peers-build > "$tmp/make.log" 2>&1 &&
   [ -x "$PBENCH" ]; then
	ok "$PBENCH builds"
else
	bad "building $PBENCH"
	tail -20 "$tmp/make.log"
	echo "$passed passed, $failed failed"
	exit 1
fi

# ---- the run --------------------------------------------------------------
mkdir "$tmp/t"
start=$(date +%s)
TMPDIR="$tmp/t" timeout -k 5 90 "$PBENCH" --quick --reps 2 \
	--plots "$tmp/plots" > "$tmp/out" 2> "$tmp/err"
rc=$?
echo "     shmbus-bench-peers --quick --reps 2 (exit $rc," \
	"$(( $(date +%s) - start ))s)"
if [ $rc -eq 0 ]; then
	ok "exits 0"
else
	bad "exit status $rc"
	tail -15 "$tmp/err"
fi

# ---- the tables ------------------------------------------------------------
cell='[0-9.][0-9.]* \[[0-9.][0-9.]*-[0-9.][0-9.]*\]'
row_ok=true
for name in "shmbus busy" "shmbus blocking" \
	    "shmbus default (spin 50 us, sleep)" "shmbus zero-copy (loan)" \
	    "shmbus acked" "raw ring" "pipe" "unix socketpair" "zeromq ipc" \
	    "redis pub/sub" "iceoryx"; do
	# the row, its 4 measured cells in [min-max] form, 2 ratios
	n=$(grep -F "| $name | " "$tmp/out" |
	    grep -c "^| .* | $cell | $cell | $cell | $cell | [0-9.]* | [0-9.]* |$")
	case $name in
	"shmbus busy"|"shmbus blocking"|"shmbus default"*) want=2 ;;
	"shmbus zero-copy"*|"shmbus acked"|"raw ring"|iceoryx) want=4 ;;
	*) want=2 ;;
	esac
	if [ "$n" -ne "$want" ]; then
		echo "     '$name': $n measured rows, want $want"
		row_ok=false
	fi
done
if $row_ok; then
	ok "every transport has its rows, cells as median [min-max]"
else
	bad "rows of the tables (stdout: $tmp/out)"
	cat "$tmp/out"
fi
n=$(grep -c '^| \(pipe\|unix socketpair\|zeromq ipc\|redis pub/sub\) | n/a (no busy-poll mode) |' "$tmp/out")
if [ "$n" -eq 8 ]; then
	ok "the peers without busy-poll are n/a in the busy tables"
else
	bad "n/a rows: $n, want 8"
fi
n=$(grep -c '^Finding, \(64\|4096\) B \(busy\|block\): shmbus ahead of every peer on p50 round trip: \(yes\|no (.*)\); on throughput: \(yes\|no (.*)\)\.' "$tmp/out")
if [ "$n" -eq 4 ]; then
	ok "a finding for each size and mode"
else
	bad "finding lines: $n, want 4"
fi
if grep -q '^### 64 B, busy-poll$' "$tmp/out" &&
   ! grep -q -e '\[rep' -e '^shmbus-bench' "$tmp/out"; then
	ok "tables on stdout, progress on stderr"
else
	bad "stdout and stderr"
fi

# ---- the plots --------------------------------------------------------------
png_ok=true
for p in lat-64-busy lat-64-block lat-4096-busy lat-4096-block \
	 cdf-64-busy cdf-64-block cdf-4096-busy cdf-4096-block \
	 tput-busy tput-block; do
	f="$tmp/plots/$p.png"
	if [ ! -s "$f" ] ||
	   [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')" != 89504e47 ]; then
		echo "     $p.png: missing or not a PNG"
		png_ok=false
	fi
done
if $png_ok; then
	ok "10 PNGs"
else
	bad "plots (in $tmp/plots)"
fi

# ---- what it started is gone ------------------------------------------------
gone_ok=true
for s in redis-server iox-roudi; do
	pid=$(sed -n "s/^shmbus-bench-peers: $s started, pid \([0-9]*\)$/\1/p" \
		"$tmp/err" | head -1)
	if [ -z "$pid" ]; then
		echo "     no '$s started' line"
		gone_ok=false
	elif kill -0 "$pid" 2>/dev/null; then
		echo "     $s (pid $pid) still runs"
		gone_ok=false
	fi
done
if [ -e /dev/shm/iceoryx_mgmt ] && ! pgrep -x iox-roudi > /dev/null; then
	echo "     RouDi's shared memory is left"
	gone_ok=false
fi
# each iceoryx runtime's socket and lock, which it removes at exit
if ls -d /tmp/shmbus-bench-peers-[0-9]* 2>/dev/null; then
	echo "     iceoryx runtimes' files left in /tmp"
	gone_ok=false
fi
if $gone_ok; then
	ok "redis-server and iox-roudi stopped"
else
	bad "servers left"
fi
dir=$(sed -n 's/^shmbus-bench-peers: files in //p' "$tmp/err")
if [ -n "$dir" ] && [ ! -e "$dir" ] && [ -z "$(ls -A "$tmp/t")" ] &&
   ! grep -q '^shmbus-bench[a-z-]*: rmdir' "$tmp/err"; then
	ok "temporary directories removed"
else
	bad "temporary directory '$dir' left: $(ls -A "$tmp/t")"
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
