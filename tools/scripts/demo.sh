#!/bin/sh
# demo.sh - what `make demo` runs: the classic messaging patterns, with
# real processes (the CLI and examples/worker.c) and the daemon started
# on first use: a topic with three consumer groups, a work queue with a
# worker killed mid-job, a poison message retried with backoff into a
# dead-letter queue, request-reply with a timeout, an idempotent retry.
# Each is checked (PASS/FAIL); then `shmbus stat`.
#
# It uses a private socket in a temporary directory so it never disturbs a
# daemon you already run, and stops its daemon at the end.
set -eu

B=${B:-build}
BIN=$(cd "$B/bin" && pwd)
EX=$(cd "$B/examples" && pwd)
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

step "0. the daemon starts on first use"
"$SHMBUS" queue declare demo.jobs --max-len 256 --msg-size 512
echo "shmbusd running, pid $(cat "$SHMBUS_SOCKET.lock"), socket $SHMBUS_SOCKET"

step "0. a consumer process and a producer process exchange $N messages"
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

step "1. order service: order.created fans out to three consumer groups"
"$SHMBUS" topic declare order.created
for g in inventory billing email; do
	"$SHMBUS" sub order.created --group "$g" --durable -n 5 --timeout 5 \
		> "$DIR/group-$g" &
	eval "grp_$g=\$!"
done
# durable groups exist as soon as they are declared by their first
# subscriber: wait until all three are there before publishing
for i in $(seq 1 200); do
	[ "$("$SHMBUS" topic list | grep -c 'order.created#')" -eq 3 ] && break
	sleep 0.01
done
for o in 1001 1002 1003 1004 1005; do
	"$SHMBUS" pub order.created "order $o: 2 x coffee" 2>/dev/null
done
wait "$grp_inventory" "$grp_billing" "$grp_email"
ok=1
for g in inventory billing email; do
	n=$(wc -l < "$DIR/group-$g")
	echo "  group $g received $n orders: $(cut -d: -f1 "$DIR/group-$g" | tr '\n' ' ')"
	[ "$n" -eq 5 ] || ok=0
done
"$SHMBUS" topic list
if [ "$ok" -eq 1 ]; then
	echo "PASS: every group got every order (one shared copy in memory" \
	     "per order, not three)"
else
	echo "FAIL: a group missed orders"
	exit 1
fi

step "2. work queue: 5 workers share 20 image jobs; one is killed mid-job"
# each job takes a worker 150 ms; leases are 5 s, so the redelivery seen
# here comes from the daemon noticing the death, not from a lease running out
"$SHMBUS" queue declare demo.images --lease 5
seq 1 20 | sed 's/^/image-/' | "$SHMBUS" pub demo.images 2>/dev/null
for w in 1 2 3 4 5; do
	"$EX/worker" demo.images "w$w" --work-ms 150 --idle-ms 800 \
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

step "3. poison message: retried with exponential backoff, then dead-lettered"
"$SHMBUS" queue declare demo.resize.dlq
"$SHMBUS" queue declare demo.resize --max-deliveries 4 --backoff 0.1 \
	--backoff-mult 2 --dlq demo.resize.dlq
"$SHMBUS" pub demo.resize "corrupt.jpg" 2>/dev/null
"$EX/worker" demo.resize w-poison --fail --idle-ms 1200 \
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

step "4. request-reply: a price service answers, matched by correlation id"
"$SHMBUS" queue declare prices
# the price: the length of the name, in euros (any deterministic answer)
"$SHMBUS" reply prices -n 3 --timeout 5 \
	--exec 'sku=$(cat); printf "%s costs %d.50 EUR" "$sku" "${#sku}"' \
	2>/dev/null &
srv=$!
sleep 0.2
ok=1
pids=
for sku in espresso latte mocha; do
	"$SHMBUS" req prices "$sku" > "$DIR/reply-$sku" &
	pids="$pids $!"
done
wait $pids || ok=0
for sku in espresso latte mocha; do
	echo "  req prices $sku -> $(cat "$DIR/reply-$sku")"
	grep -q "^$sku costs" "$DIR/reply-$sku" || ok=0
done
"$SHMBUS" queue declare prices.slow
"$SHMBUS" reply prices.slow --exec 'sleep 1; cat' -n 1 --timeout 3 \
	2>/dev/null &
slow=$!
sleep 0.2
if "$SHMBUS" req prices.slow "anything" --timeout 0.3 2> "$DIR/timeout"; then
	ok=0
fi
echo "  req prices.slow --timeout 0.3 -> $(cat "$DIR/timeout")"
"$SHMBUS" queue declare prices.closed
if "$SHMBUS" req prices.closed "anything" 2> "$DIR/noresp"; then
	ok=0
fi
echo "  req prices.closed -> $(cat "$DIR/noresp")"
wait "$srv" "$slow" 2>/dev/null || true
if [ "$ok" -eq 1 ]; then
	echo "PASS: each request got its own reply; a slow service timed out;" \
	     "a queue with no service failed at once"
else
	echo "FAIL: see above"
	exit 1
fi

step "5. idempotency: a producer retries a publish with the same dedup id"
"$SHMBUS" queue declare payments --dedup-window 60
"$SHMBUS" pub payments "charge order 1001: 4.50 EUR" --dedup-id pay-1001 \
	2>/dev/null
echo "  (the producer did not see the acknowledgement and retries)"
"$SHMBUS" pub payments "charge order 1001: 4.50 EUR" --dedup-id pay-1001 \
	2>/dev/null
"$SHMBUS" pub payments "charge order 1002: 3.20 EUR" --dedup-id pay-1002 \
	2>/dev/null
"$SHMBUS" sub payments --timeout 0.5 > "$DIR/payments"
sed 's/^/  consumer: /' "$DIR/payments"
dups=$("$SHMBUS" stat --format json | tr '{' '\n' | grep '"name":"payments"' |
       sed 's/.*"duplicates":\([0-9]*\).*/\1/')
if [ "$(grep -c 'order 1001' "$DIR/payments")" -eq 1 ] &&
   [ "$(wc -l < "$DIR/payments")" -eq 2 ] && [ "$dups" = "1" ]; then
	echo "PASS: the retried charge was accepted and dropped (counted:" \
	     "$dups duplicate); the consumer charged once"
else
	echo "FAIL: $(wc -l < "$DIR/payments") charges seen, $dups duplicates"
	exit 1
fi

step "summary: every queue's counters (shmbus stat, read from the arena)"
"$SHMBUS" stat

printf '\nTry it yourself:  shmbus queue declare q; echo hi | shmbus pub q; shmbus sub q -n 1\n'
