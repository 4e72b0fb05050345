#!/bin/sh
# probe-overhead.sh - what the USDT probes cost, against three libraries
# run alternately so that all three see the same machine: a build without
# probes (make PROBES=0), the normal build with nobody attached, and the
# normal build under `shmbus monitor` (root).
#
# Two measures:
#  - probe-cost: one thread publishes, receives and acks 64 B messages;
#    ns per message, the best of 5 x 1,000,000 (100,000 attached). One
#    CPU, no cross-core traffic: the steadiest number this VM gives, so it
#    runs COST_ROUNDS times; reported as the minimum and the median.
#  - shmbus-bench: ping-pong RTT and one-way throughput between two
#    processes (these move by 2x between runs with vCPU placement).
#
#   sh tools/bench/probe-overhead.sh [ROUNDS [COST_ROUNDS]]  (source tree)
set -eu
ROUNDS=${1:-3}
COST_ROUNDS=${2:-15}
B=build
NOPROBES=build-noprobes
make -s all >/dev/null
make -s PROBES=0 lib >/dev/null
PIN=/sys/fs/bpf/shmbus-overhead
OUT=$(mktemp -d /tmp/shmbus-overhead-XXXXXX)
root=$([ "$(id -u)" = 0 ] && echo 1 || echo 0)
# probe-cost's bus: a private daemon
"$B/bin/shmbusd" --socket "$OUT/sock" 2>/dev/null &
DPID=$!
trap '"$B/bin/shmbus" monitor stop --pin-dir "$PIN" >/dev/null 2>&1 || true; kill $DPID 2>/dev/null; rm -rf "$OUT"' EXIT
while [ ! -S "$OUT/sock" ]; do sleep 0.05; done

cost() {	# label, messages, then env
	label=$1 n=$2
	shift 2
	echo "$label $(env SHMBUS_SOCKET="$OUT/sock" "$@" "$B/bin/probe-cost" "$n" 5)" \
		>> "$OUT/cost"
}
bench() {	# label, then env
	label=$1
	shift
	env "$@" "$B/bin/shmbus-bench" --only shmbus,raw --size 64 --mode busy \
		--reps 3 2>/dev/null |
	awk -v l="$label" '
		$1 == "raw" && $2 == "ring" && $3 == "busy" { raw_rtt = $4; raw_tp = $8 }
		$1 == "shmbus" && $2 == "busy" { rtt = $3; tp = $7 }
		END { print l, raw_rtt, raw_tp, rtt, tp }' >> "$OUT/bench"
}
attached() {	# run "$@" with the monitor attached
	"$B/bin/shmbus" monitor start --pin-dir "$PIN" >/dev/null
	"$@"
	"$B/bin/shmbus" monitor stop --pin-dir "$PIN" >/dev/null
}

for r in $(seq 1 "$COST_ROUNDS"); do
	cost noprobes 1000000 LD_LIBRARY_PATH="$PWD/$NOPROBES/lib"
	cost unattached 1000000
	[ "$root" = 1 ] && [ "$r" -le 3 ] && attached cost attached 100000
done
for r in $(seq 1 "$ROUNDS"); do
	bench noprobes LD_LIBRARY_PATH="$PWD/$NOPROBES/lib"
	bench unattached
	[ "$root" = 1 ] && attached bench attached
done

echo "probe-cost, ns per message (publish + receive + ack, one thread), per round:"
awk '{ a[$1] = a[$1] " " $2 } END { for (l in a) print "  " l ":" a[l] }' "$OUT/cost" | sort
echo "shmbus-bench per round: label raw_rtt_us raw_tput shmbus_rtt_us shmbus_tput"
sed 's/^/  /' "$OUT/bench"
awk '
	function tonum(s) { m = 1; if (s ~ /M$/) m = 1e6; else if (s ~ /k$/) m = 1e3;
			    sub(/[Mk]$/, "", s); return s * m }
	function sort(a, l, k, v,   i, j, t) {
		for (i = 1; i <= k; i++) v[i] = a[l, i]
		for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++)
			if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
	}
	function med(a, l, k,   v) { sort(a, l, k, v); return v[int((k + 1) / 2)] }
	function lo(a, l, k,   v) { sort(a, l, k, v); return v[1] }
	FILENAME ~ /cost$/ { nc[$1]++; c[$1, nc[$1]] = $2; next }
	{ nb[$1]++; rtt[$1, nb[$1]] = $4; tp[$1, nb[$1]] = tonum($5) }
	END {
		bm = lo(c, "noprobes", nc["noprobes"]); bd = med(c, "noprobes", nc["noprobes"])
		br = med(rtt, "noprobes", nb["noprobes"]); bt = med(tp, "noprobes", nb["noprobes"])
		for (l in nc) {
			m = lo(c, l, nc[l]); d = med(c, l, nc[l])
			printf "%-10s one-thread: min %.1f ns (%.3fx), median %.1f ns (%.3fx) over %d rounds\n",
			       l, m, m / bm, d, d / bd, nc[l]
		}
		for (l in nb) {
			r = med(rtt, l, nb[l]); t = med(tp, l, nb[l])
			printf "%-10s two-process medians: RTT %.2f us (%.3fx)  throughput %.2fM msg/s (%.3fx)\n",
			       l, r, r / br, t / 1e6, t / bt
		}
	}' "$OUT/cost" "$OUT/bench"
