#!/bin/sh
# demo.sh - what `make demo` runs: start a daemon, run producers and
# consumers as separate processes (the CLI and the C examples): a plain
# exchange, a work queue with a worker killed mid-job, a poison message
# retried with backoff into a dead-letter queue; check each, print
# `shmbus stat`.
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

step "4. work queue: 5 workers share 20 image jobs; one is killed mid-job"
# each job takes a worker 150 ms; leases are 5 s, so the redelivery seen
# here comes from the daemon noticing the death, not from a lease running out
"$SHMBUS" queue declare demo.images --lease 5
seq 1 20 | sed 's/^/image-/' | "$SHMBUS" pub demo.images 2>/dev/null
for w in 1 2 3 4 5; do
	"$BIN/examples/worker" demo.images "w$w" --work-ms 150 --idle-ms 800 \
		> "$DIR/worker$w" &
	eval "wk$w=\$!"
done
# kill worker 3 while it holds a job
for i in $(seq 1 100); do
	grep -q start "$DIR/worker3" 2>/dev/null && break
	sleep 0.01
done
victim=$(grep start "$DIR/worker3" | tail -1 | awk '{print $3}')
kill -9 "$wk3"
wait "$wk1" "$wk2" "$wk4" "$wk5" 2>/dev/null || true
wait "$wk3" 2>/dev/null || true
cat "$DIR"/worker? | grep ' done ' | awk '{print $3}' | sort > "$DIR/done"
ndone=$(sort -u "$DIR/done" | wc -l)
ndup=$(uniq -d "$DIR/done" | wc -l)
again=$(cat "$DIR"/worker? | grep " done $victim delivery 2" | awk '{print $1}')
echo "worker w3 was killed (kill -9) while working on $victim"
if [ "$ndone" -eq 20 ] && [ "$ndup" -eq 0 ] && [ -n "$again" ]; then
	echo "PASS: all 20 jobs done, each once; $victim was redelivered" \
	     "(delivery 2) and done by worker $again"
else
	echo "FAIL: $ndone distinct jobs done, $ndup done twice," \
	     "redelivered to '${again:-nobody}'"
	exit 1
fi

step "5. poison message: retried with exponential backoff, then dead-lettered"
"$SHMBUS" queue declare demo.resize.dlq
"$SHMBUS" queue declare demo.resize --max-deliveries 4 --backoff 0.1 \
	--backoff-mult 2 --dlq demo.resize.dlq
"$SHMBUS" pub demo.resize "corrupt.jpg" 2>/dev/null
"$BIN/examples/worker" demo.resize w-poison --fail --idle-ms 1200 \
	> "$DIR/poison"
grep ' fail ' "$DIR/poison" | sed 's/^/  /'
gaps=$(grep ' fail ' "$DIR/poison" | awk '{t=$7; if (NR > 1) printf "%d ", t - p; p = t}')
echo "  gaps between deliveries (ms): $gaps (backoff 100, 200, 400)"
"$SHMBUS" dlq peek demo.resize.dlq 2>/dev/null | tee "$DIR/peek"
if [ "$(grep -c ' fail ' "$DIR/poison")" -eq 4 ] &&
   grep -q '^max-deliveries *demo.resize *4 *corrupt.jpg' "$DIR/peek"; then
	echo "PASS: delivered exactly 4 times, then in demo.resize.dlq with" \
	     "reason max-deliveries"
else
	echo "FAIL: see above"
	exit 1
fi

step "6. what the arena says (shmbus stat, no daemon round trip)"
"$SHMBUS" stat

printf '\nTry it yourself:  shmbus queue declare q; echo hi | shmbus pub q; shmbus sub q -n 1\n'
