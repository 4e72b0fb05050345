#!/bin/sh
# run.sh - run every libFuzzer target of tests/fuzz/ for FUZZ_SECONDS
# each (make fuzz: 300; make test: 10), starting from the inputs that once
# failed (tests/fuzz/regress-NAME/, run first) and seeds made by mkseeds;
# with FUZZ_KEEP=1 (make fuzz) also from what earlier runs found, kept in
# B/fuzz/corpus-NAME (make test starts afresh, so its time stays fixed).
# Fails on any crash, sanitizer report, leak or timeout; prints how many
# inputs each target ran. A failing input is left in B/fuzz/artifacts/.
#
# Environment: B (build dir), FUZZ_SECONDS (per target, default 10),
# FUZZ_KEEP, MAKE.
set -eu

B=${B:-build}
SECS=${FUZZ_SECONDS:-10}
FZ=$B/fuzz

${MAKE:-make} -s B="$B" fuzz-build
mkdir -p "$FZ/artifacts"
failed=0
for t in "$FZ"/fuzz_*; do
	case $t in *.d) continue ;; esac
	name=${t##*/fuzz_}
	corpus=$FZ/corpus-$name
	if [ "${FUZZ_KEEP:-0}" != 1 ]; then
		corpus=$FZ/run-corpus-$name
		rm -rf "$corpus"
	fi
	seeds=$FZ/seeds-$name
	regress=tests/fuzz/regress-$name
	rm -rf "$seeds"
	mkdir -p "$corpus" "$seeds" "$regress"
	"$FZ/mkseeds" "$name" "$seeds"
	log=$FZ/$name.log
	echo "fuzz_$name: ${SECS}s"
	# -timeout: one input may take 10 s at most (a hang is a failure);
	# leaks are checked per input by AddressSanitizer
	if ASAN_OPTIONS="${ASAN_OPTIONS:-} detect_leaks=1" \
	   UBSAN_OPTIONS="${UBSAN_OPTIONS:-} print_stacktrace=1" \
	   "$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
		-max_len=4096 -print_final_stats=1 \
		-artifact_prefix="$FZ/artifacts/$name-" \
		"$corpus" "$regress" "$seeds" >"$log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
		grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || true
		echo "fuzz_$name: $runs inputs run, 0 crashes," \
		     "corpus $(ls "$corpus" | wc -l) inputs"
	else
		failed=1
		tail -n 60 "$log"
		echo "fuzz_$name: FAILED (log $log; input in $FZ/artifacts/)"
	fi
done
exit $failed
