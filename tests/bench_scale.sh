#!/bin/sh
# bench_scale.sh - shmbus-bench-scale from a short run (--quick --reps 1,
# about 20 s on 2 CPUs), under a timeout:
#  - it exits 0, and prints a Markdown table for each of its five sweeps
#    with a row for each point of the quick sweep;
#  - each sweep left a PNG (gnuplot) and its data file in --plots DIR;
#  - the private daemon it started is gone and its temporary directory
#    removed;
#  - an unknown sweep in --only is refused (exit status not 0).
# gnuplot (Debian gnuplot-nox, which make deps installs) is needed for the
# plots: without it the test is skipped, or fails under CI=true.
# Environment: B (build dir), CI. The last line is "N passed, N failed".
set -u

B=${B:-build}
SBENCH=$B/bin/shmbus-bench-scale
passed=0
failed=0
tmp=$(mktemp -d "${SHMBUS_TEST_TMP:-/tmp}/shmbus-bench-scale-test-XXXXXX") ||
	exit 1
trap 'rm -rf "$tmp"' EXIT

ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

# the benchmark runs its own daemon, which it stops at exit
unset SHMBUS_SOCKET

if ! command -v gnuplot > /dev/null; then
	case ${CI:-} in
	true|1|yes)
		bad "gnuplot is not installed (make deps installs gnuplot-nox)"
		;;
	*)
		echo "skip: gnuplot is not installed (make deps installs gnuplot-nox)"
		;;
	esac
	echo "$passed passed, $failed failed"
	[ $failed -eq 0 ]
	exit
fi

start=$(date +%s)
timeout -k 5 100 "$SBENCH" --quick --reps 1 --plots "$tmp/plots" \
	> "$tmp/out" 2> "$tmp/err"
rc=$?
echo "     shmbus-bench-scale --quick --reps 1 (exit $rc, $(( $(date +%s) - start ))s)"
if [ $rc -eq 0 ]; then
	ok "--quick --reps 1 exits 0"
else
	bad "--quick --reps 1 exits $rc"
	tail -15 "$tmp/err"
fi

# rows of the table whose title starts with $1: lines "| <number>..."
rows() {
	awk -v t="### $1" '
		index($0, t) == 1 { on = 1; next }
		/^### / { on = 0 }
		on && /^\| [0-9]/ { n++ }
		END { print n + 0 }' "$tmp/out"
}

# title, quick points: 1..64 queues, 1..16 consumers, 1..64 subscribers,
# 8 B..64 KiB, depth 1..16K
for t in "Queues:7" "Competing consumers:5" "Topic fan-out:7" \
	 "Message size:8" "Backlog depth:8"; do
	title=${t%:*}
	want=${t##*:}
	got=$(rows "$title")
	if [ "$got" -eq "$want" ]; then
		ok "table '$title': $got rows"
	else
		bad "table '$title': $got rows, want $want"
	fi
done
if ! grep -q -e '^shmbus-bench-scale:' -e '  rep ' "$tmp/out"; then
	ok "progress on stderr, not in the tables"
else
	bad "progress lines on stdout"
fi

for s in queues consumers fanout sizes depth; do
	png=$tmp/plots/$s.png
	if [ -s "$png" ] && [ -s "$tmp/plots/$s.dat" ] &&
	   [ "$(od -An -c -N4 "$png" | tr -d ' ')" = '211PNG' ]; then
		ok "plot $s.png"
	else
		bad "plot $s.png missing or not a PNG"
	fi
done

sock=$(sed -n 's/^shmbus-bench-scale: daemon on //p' "$tmp/err")
dir=${sock%/*}
if [ -n "$sock" ] && [ ! -e "$dir" ]; then
	ok "temporary directory $dir removed"
else
	bad "temporary directory '$dir' left (socket '$sock')"
fi
if [ -n "$sock" ] && ! pgrep -f -- "--socket $sock" > /dev/null &&
   ! pgrep -f -- "$sock" > /dev/null; then
	ok "its daemon is stopped"
else
	bad "a daemon on '$sock' still runs"
fi

if timeout -k 5 20 "$SBENCH" --quick --only nosuch > /dev/null 2>&1; then
	bad "--only nosuch accepted"
else
	ok "--only nosuch refused"
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
