#!/bin/sh
# bench.sh - shmbus-bench's reports, from short runs (--quick, fewer
# repetitions; about 12 s on 2 CPUs), each under a timeout:
#  - --format json: stdout is one JSON document (python3's json module)
#    with the machine facts and the run's parameters, and rows with every
#    field; at least one row of every benchmark, and a p50 and a
#    throughput row for every transport and mode the run measured; each
#    measurement row's repetitions, median, min and max agree, and its
#    spread_warning is max/min > 2 of its repetitions; goal rows have a
#    goal, a ratio and met (true or false); the exit status is 0 whatever
#    the goals' outcome;
#  - --format csv: the header, then the same 13 fields on every line
#    (python3's csv module), repetitions joined by ';';
#  - text: the goals table has its goal column, and every goal's status
#    is met, not yet or not measured, never a failure;
#  - make bench BENCH_ARGS='--format json ...': stdout is still only the
#    document (the build's output goes to stderr);
#  - every run removes its temporary directory (no rmdir complaint);
#  - ring-ceiling (a short run) moves every variant's refs exactly once
#    and in order, the library's lane among them.
# Environment: B (build dir), MAKE. The last line is "N passed, N failed".
set -u

B=${B:-build}
MAKE=${MAKE:-make}
BENCH=$B/bin/shmbus-bench
passed=0
failed=0
tmp=$(mktemp -d "${SHMBUS_TEST_TMP:-/tmp}/shmbus-bench-test-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

# the benchmark runs its own daemon, which it stops at exit
unset SHMBUS_SOCKET

# run NAME ARGS...: the benchmark's stdout in $tmp/NAME.out, stderr in
# $tmp/NAME.err; 0 when it exited 0 within its time
run() {
	name=$1
	shift
	start=$(date +%s)
	timeout -k 5 60 "$BENCH" "$@" > "$tmp/$name.out" 2> "$tmp/$name.err"
	rc=$?
	echo "     shmbus-bench $* (exit $rc, $(( $(date +%s) - start ))s)"
	# its temporary directory went with its daemon's files
	if grep '^shmbus-bench: rmdir' "$tmp/$name.err"; then
		rc=1
	fi
	[ $rc -eq 0 ] && return 0
	tail -5 "$tmp/$name.err"
	return 1
}

# ---- JSON ---------------------------------------------------------------
if run json --quick --reps 2 --format json; then
	ok "--format json exits 0"
	if python3 - "$tmp/json.out" <<'EOF'; then
import json, sys

doc = json.load(open(sys.argv[1]))
errors = []
def need(cond, what):
	if not cond:
		errors.append(what)

for k in ("program", "version", "machine", "parameters", "rows"):
	need(k in doc, "top-level key %s" % k)
for k in ("cpu", "nproc", "kernel", "clocksource", "date"):
	need(k in doc["machine"], "machine.%s" % k)
par = doc["parameters"]
for k in ("quick", "repetitions", "rtt_trips_busy", "rtt_trips_block",
	  "one_way_msgs_64", "one_way_msgs_4096", "transports", "modes",
	  "sizes", "spread_limit"):
	need(k in par, "parameters.%s" % k)
need(par["quick"] is True and par["repetitions"] == 2, "quick, 2 reps")

fields = ["benchmark", "transport", "mode", "size", "unit", "median", "min",
	  "max", "reps", "spread_warning", "ratio", "goal", "met"]
rows = doc["rows"]
for r in rows:
	need(list(r) == fields, "fields of %s" % r)
benches = {r["benchmark"] for r in rows}
for b in ("rtt_p50", "rtt_p99", "rtt_p999", "rtt_max", "throughput",
	  "rtt_p50_vs_shmbus", "throughput_vs_shmbus", "rtt_p50_vs_raw",
	  "rtt_p50_vs_pipe", "throughput_vs_raw", "throughput_vs_auto_ack",
	  "fanout_publish", "fanout_delivery", "reqrep_rtt_p50",
	  "reqrep_rtt_p99", "reqrep_rtt_mean", "reqrep_pingpong_rtt_p50",
	  "rtt_p999_vs_pipe",
	  "reqrep_rtt_p50_vs_rtt_p50", "fanout8_cost_vs_fanout1"):
	need(b in benches, "a row of %s" % b)

# every measured transport and mode, at both sizes
busy = ("raw ring", "shmbus", "shmbus ack", "shmbus loan", "shmbus crc")
for size in (64, 4096):
	for tp in par["transports"]:
		for mode in ("busy", "block"):
			if mode == "busy" and tp not in busy:
				continue
			for b in ("rtt_p50", "throughput"):
				need(any(r["benchmark"] == b and
					 r["transport"] == tp and
					 r["mode"] == mode and r["size"] == size
					 for r in rows),
				     "%s %s %s %d B" % (b, tp, mode, size))

goals = 0
for r in rows:
	name = "%s %s %s %s B" % (r["benchmark"], r["transport"], r["mode"],
				  r["size"])
	if r["reps"]:
		v = r["reps"]
		need(r["ratio"] is None, name + ": no ratio")
		need(r["min"] == min(v) and r["max"] == max(v), name + ": min, max")
		need(r["min"] <= r["median"] <= r["max"], name + ": median")
		if r["benchmark"] in ("rtt_p50", "throughput"):
			need(len(v) == 2, name + ": 2 repetitions")
			need(r["spread_warning"] == (max(v) / min(v) > 2),
			     name + ": spread_warning of %s" % v)
		else:
			need(r["spread_warning"] is None, name + ": not checked")
	else:
		need(type(r["ratio"]) in (int, float), name + ": a ratio")
		# the tails, and what is measured once, are not checked
		once = r["benchmark"] in ("rtt_p999_vs_pipe",
					  "reqrep_rtt_p50_vs_rtt_p50",
					  "fanout8_cost_vs_fanout1")
		need(r["spread_warning"] is None if once else
		     isinstance(r["spread_warning"], bool), name + ": spread")
	if r["goal"] is not None:
		goals += 1
		need(r["unit"] == "ratio" and isinstance(r["met"], bool),
		     name + ": goal, met")
# per size: busy p50 vs raw, blocking p50 and p99.9 vs pipe; 64 B: busy
# throughput vs raw, acked vs auto-ack, request-reply, fan-out; 4 KiB:
# zero-copy throughput vs raw
need(goals == 11, "11 goal rows (%d)" % goals)
not_met = [r["benchmark"] for r in rows if r["met"] is False]
print("     %d rows; goals not met yet: %s; spread warnings: %d" %
      (len(rows), ", ".join(not_met) or "none",
       sum(r["spread_warning"] is True for r in rows)))
for e in errors:
	print("     missing or wrong:", e)
sys.exit(1 if errors else 0)
EOF
		ok "JSON parses and has every key and row"
	else
		bad "JSON report (stdout: $tmp/json.out)"
	fi
	if grep -q '^shmbus-bench: warning: ' "$tmp/json.err" ||
	   ! grep -q '"spread_warning": true' "$tmp/json.out"; then
		ok "spread warnings, if any, are on stderr as well"
	else
		bad "a spread_warning row without its warning on stderr"
	fi
else
	bad "--format json"
fi

# ---- CSV ----------------------------------------------------------------
if run csv --quick --reps 2 --size 64 --format csv; then
	ok "--format csv exits 0"
	if python3 - "$tmp/csv.out" <<'EOF'; then
import csv, sys

lines = list(csv.reader(open(sys.argv[1], newline="")))
head = ("benchmark,transport,mode,size,unit,median,min,max,reps,"
	"spread_warning,ratio,goal,met").split(",")
ok = lines[0] == head
counts = {len(l) for l in lines}
ok = ok and counts == {13} and len(lines) > 50
for l in lines[1:]:
	r = dict(zip(head, l))
	if r["reps"]:
		reps = [float(x) for x in r["reps"].split(";")]
		ok = ok and float(r["min"]) == min(reps) and r["ratio"] == ""
	else:
		ok = ok and r["ratio"] != ""
	ok = ok and r["spread_warning"] in ("", "true", "false")
	ok = ok and r["met"] in ("", "true", "false")
print("     %d lines, fields per line: %s" % (len(lines), sorted(counts)))
sys.exit(0 if ok else 1)
EOF
		ok "CSV: header, 13 fields on every line"
	else
		bad "CSV report (stdout: $tmp/csv.out)"
	fi
else
	bad "--format csv"
fi

# ---- text ---------------------------------------------------------------
if run text --quick --reps 1 --only shmbus,raw,pipe; then
	ok "text exits 0"
	goals=$(sed -n '/^== goals/,/^$/p' "$tmp/text.out")
	if echo "$goals" | grep -q '^measure  *goal  *measured  *status$' &&
	   [ "$(echo "$goals" | grep -c ' B .* [<>]= ')" -eq 11 ] &&
	   ! echo "$goals" | grep ' B ' |
		grep -vq -e ' met$' -e ' not yet$' -e ' not measured$' &&
	   ! grep -q -e MISSED -e FAIL -e 'NOT met' "$tmp/text.out"; then
		ok "text: goals table with a goal column, met or not yet"
	else
		bad "text goals table:"
		echo "$goals"
	fi
	if grep -q '^== 64 B messages ==' "$tmp/text.out" &&
	   ! grep -q -e '^  \[rep' -e '^shmbus-bench:' "$tmp/text.out"; then
		ok "text: tables on stdout, progress on stderr"
	else
		bad "text: stdout and stderr"
	fi
else
	bad "text"
fi

# ---- make bench ---------------------------------------------------------
start=$(date +%s)
if timeout -k 5 120 $MAKE -s B="$B" bench \
	BENCH_ARGS='--quick --reps 1 --size 64 --only raw,pipe --format json' \
	> "$tmp/make.out" 2> "$tmp/make.err" &&
   python3 -m json.tool "$tmp/make.out" > /dev/null; then
	ok "make bench BENCH_ARGS='--format json': stdout is the document" \
	   "($(( $(date +%s) - start ))s)"
else
	bad "make bench BENCH_ARGS='--format json'"
	tail -5 "$tmp/make.out" "$tmp/make.err"
fi

# ---- ring-ceiling ---------------------------------------------------------
# Every variant, the library's lane (lane.h) and queue ring (ring.h) among
# them, moves its refs between two processes; any ref lost, repeated, out
# of order or with a wrong payload is a non-zero exit.
start=$(date +%s)
if timeout -k 5 60 "$B/bin/ring-ceiling" 200000 1 > "$tmp/rc.out" \
	2> "$tmp/rc.err" &&
   [ "$(grep -c '^| c32 | lane: claim runs' "$tmp/rc.out")" -eq 2 ]; then
	ok "ring-ceiling: every ref once and in order, each variant" \
	   "($(( $(date +%s) - start ))s)"
else
	bad "ring-ceiling"
	tail -5 "$tmp/rc.out" "$tmp/rc.err"
fi

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
