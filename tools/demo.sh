#!/bin/sh
# demo.sh - what `make demo` runs: start a daemon, run a producer and a
# consumer of a sample queue (as separate processes, through the CLI and
# through the C example), check what passed, print `shmbus stat`.
#
# It uses a private socket in a temporary directory so it never disturbs a
# daemon you already run, and stops its daemon at the end.
set -eu

B=${B:-build}
BIN=$(cd "$B" && pwd)
SHMBUS="$BIN/shmbus"
DIR=$(mktemp -d /tmp/shmbus-demo-XXXXXX)
export SHMBUS_SOCKET="$DIR/shmbusd.sock"
export SHMBUS_BUS=demo
N=10000

cleanup() {
	if [ -f "$SHMBUS_SOCKET.lock" ]; then
		pid=$(cat "$SHMBUS_SOCKET.lock" 2>/dev/null || true)
		[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	fi
	rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

if [ -t 1 ]; then
	step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
	step() { printf '\n== %s\n' "$*"; }
fi

step "1. the daemon starts on first use"
"$SHMBUS" queue declare demo.jobs --max-len 256 --msg-size 512
echo "shmbusd running, pid $(cat "$SHMBUS_SOCKET.lock"), socket $SHMBUS_SOCKET"

step "2. a consumer process and a producer process exchange $N messages"
"$SHMBUS" sub demo.jobs -n "$N" --timeout 10 > "$DIR/received" &
cons=$!
t0=$(date +%s%N)
seq 1 "$N" | sed 's/^/job /' | "$SHMBUS" pub demo.jobs
wait "$cons"
t1=$(date +%s%N)
seq 1 "$N" | sed 's/^/job /' > "$DIR/expected"
if cmp -s "$DIR/expected" "$DIR/received"; then
	echo "PASS: $N of $N messages arrived, in order, intact" \
	     "($(( (t1 - t0) / 1000000 )) ms including process start-up)"
else
	echo "FAIL: received $(wc -l < "$DIR/received") of $N, or out of order"
	exit 1
fi

step "3. the C API: examples/hello.c (fork, publish, zero-copy receive)"
SHMBUS_BUS= "$BIN/examples/hello"

step "4. competing consumers: two consumers share one queue"
"$SHMBUS" queue declare demo.work --max-len 64
"$SHMBUS" sub demo.work --timeout 1 > "$DIR/w1" &
c1=$!
"$SHMBUS" sub demo.work --timeout 1 > "$DIR/w2" &
c2=$!
sleep 0.3
seq 1 1000 | "$SHMBUS" pub demo.work
wait "$c1" "$c2"
n1=$(wc -l < "$DIR/w1")
n2=$(wc -l < "$DIR/w2")
dups=$(sort -n "$DIR/w1" "$DIR/w2" | uniq -d | wc -l)
if [ $((n1 + n2)) -eq 1000 ] && [ "$dups" -eq 0 ]; then
	echo "PASS: 1000 messages split $n1 + $n2 between the consumers," \
	     "each delivered once"
else
	echo "FAIL: $n1 + $n2 messages, $dups duplicates"
	exit 1
fi

step "5. what the arena says (shmbus stat, no daemon round trip)"
"$SHMBUS" stat

printf '\nTry it yourself:  shmbus queue declare q; echo hi | shmbus pub q; shmbus sub q -n 1\n'
