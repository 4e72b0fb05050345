#!/bin/sh
# run.sh - run every test program under a timeout and summarise.
#
# Environment: B (build dir, default build), CI (true: skips are
# failures), SAN (sanitizer name: sets its runtime options), TESTS (space-
# separated subset of program names), TEST_TIMEOUT (seconds per program).
set -u

B=${B:-build}
SAN=${SAN:-}
TEST_TIMEOUT=${TEST_TIMEOUT:-600}
export CMOCKA_MESSAGE_OUTPUT=stdout
export SHMBUS_DAEMON="$(cd "$B" && pwd)/bin/shmbusd"
# SHMBUS_TEST_SCALE (0..1) shrinks the heavy tests' counts for quick local
# runs; unset, every build (sanitizers included) runs them at full size.
if [ "$SAN" = thread ]; then
	# fork-heavy tests: TSan must not die in the children; a process
	# that exits with a bus open still has that handle's watcher thread,
	# and TSan would sleep 1 s at every such exit (atexit_sleep_ms)
	export TSAN_OPTIONS="${TSAN_OPTIONS:-} die_after_fork=0 halt_on_error=1 atexit_sleep_ms=0"
fi
if [ "$SAN" = address ]; then
	export ASAN_OPTIONS="${ASAN_OPTIONS:-} detect_leaks=1 abort_on_error=1"
fi

passed=0
failed=0
failed_names=""

# The tests make their socket directories under a directory of this run
# alone, so that reaping never touches another run's daemons (two runs at
# once: CI beside a developer's make test).
SHMBUS_TEST_TMP=$(mktemp -d /tmp/shmbus-run-XXXXXX) || exit 1
chmod 0755 "$SHMBUS_TEST_TMP"	# tests run clients as "nobody"
export SHMBUS_TEST_TMP
trap 'rm -rf "$SHMBUS_TEST_TMP"' EXIT

# A test that crashes leaves its private daemon running: stop the daemons
# of the test directories a program created, and remove the directories.
reap() {
	for d in "$SHMBUS_TEST_TMP"/shmbus-test-*; do
		[ -d "$d" ] || continue
		for lock in "$d"/*.lock; do
			[ -f "$lock" ] || continue
			pid=$(cat "$lock" 2>/dev/null)
			[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
		done
		rm -rf "$d"
	done
}

# A program's own timeout where it is shorter than TEST_TIMEOUT: a hang
# is reported sooner.
timeout_of() {
	case $1 in
	test_fdstore) echo 120 ;;
	test_restart) echo 300 ;;	# two minutes normally (SAN: fewer kills)
	test_durable) echo 300 ;;	# a minute or two: 200 kill -9 rounds
	test_durable_hostile) echo 120 ;;	# seconds; a stalled intake
	unit_journal) echo 120 ;;	# a second or two; a million records
	test_rmq) echo 180 ;;	# a private RabbitMQ: three boots of seconds each
	test_bridge) echo 240 ;;	# a private RabbitMQ, the bridge killed -9 six times
	test_bridge_rpc) echo 180 ;;	# a private RabbitMQ, two hosts, ~30 s
	test_bridge_flows) echo 240 ;;	# a private RabbitMQ, two daemons, the in route killed -9 ten times; ~30 s
	test_bridge_faults) echo 300 ;;	# a private RabbitMQ, eight faults of seconds each
	test_bridge_probes) echo 120 ;;	# a private RabbitMQ, the BPF monitor; seconds
	test_monitor) echo 60 ;;	# the BPF monitor on three files; ~10 s
	test_bridge_sec) echo 240 ;;	# a private RabbitMQ with TLS, restarted once
	test_bridge_hostile) echo 180 ;;	# a private RabbitMQ, 200 MiB of bodies over every pool
	*) echo "$TEST_TIMEOUT" ;;
	esac
}

progs=${TESTS:-$(ls "$B"/tests/ | sort)}
for t in $progs; do
	p="$B/tests/$t"
	[ -x "$p" ] || continue
	start=$(date +%s)
	echo "=== $t"
	tmo=$(timeout_of "$t")
	timeout -k 5 "$tmo" "$p"
	rc=$?
	reap
	secs=$(( $(date +%s) - start ))
	if [ $rc -eq 0 ]; then
		passed=$((passed + 1))
		echo "--- PASS $t (${secs}s)"
	else
		failed=$((failed + 1))
		failed_names="$failed_names $t"
		if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
			echo "--- FAIL $t: timed out after ${tmo}s"
		else
			echo "--- FAIL $t (exit $rc, ${secs}s)"
		fi
	fi
done

# A test that is a script of its own, run under a timeout in the normal
# build only, when TESTS is unset or names it (by NAME or by the script's
# file name): run_script NAME SCRIPT [SECONDS, default 300].
run_script() {
	[ -z "$SAN" ] || return 0
	[ -z "${TESTS:-}" ] ||
		echo " $TESTS " | grep -q -e " $1 " -e " ${2##*/} " || return 0
	start=$(date +%s)
	echo "=== $1"
	if timeout -k 5 "${3:-300}" env B="$B" MAKE="${MAKE:-make}" sh "$2"; then
		passed=$((passed + 1))
		echo "--- PASS $1 ($(( $(date +%s) - start ))s)"
	else
		failed=$((failed + 1))
		failed_names="$failed_names $1"
		echo "--- FAIL $1 ($(( $(date +%s) - start ))s)"
	fi
}

# The kernel module, built against Debian's headers and tested inside a
# qemu VM: its programs are static and the module is not instrumented by
# our sanitizers.
run_script test_kmod tests/kmod/run-vm.sh
# Persistent queues across power cuts: the same kernel in qemu, on an
# ext4 disk image, killed mid-publish and booted again (about 35 s).
run_script test_powercut tests/powercut/run-vm.sh 240
# The libFuzzer targets (tests/fuzz/), briefly: the inputs that once
# crashed, the seeds and what earlier runs found, then FUZZ_SECONDS (10)
# of fuzzing each; clang-built with its own sanitizers, so normal build only.
run_script test_fuzz tests/fuzz/run.sh
# make install, then building and running against the installed tree: a
# program built without a sanitizer cannot load a sanitized library.
run_script test_install tests/install.sh
# The Debian packages: built, linted, installed with apt into a fresh
# debootstrap root and tried there (the root's tarball is cached).
run_script test_deb tests/deb.sh 900
# The systemd units under a real systemd: Debian bookworm with systemd
# and the packages on a disk image, booted in qemu with the same kernel
# (about a minute once the root's tarball is cached; making it, the
# first time on a machine, takes a minute or more besides).
run_script test_systemd tests/systemd/run-vm.sh 900
# The README's CLI example, run as it stands in a fresh bash (a private
# rabbitmq-server on localhost:5672 for its bridge lines).
run_script test_readme tests/readme.sh 300
# shmbus-bench's JSON, CSV and text reports, from short runs (about 12 s).
run_script test_bench tests/bench.sh 120
# shmbus-bench-peers against ZeroMQ, Redis and iceoryx (private servers),
# a short run with its tables, plots and cleanup checked (about 20 s).
run_script test_bench_peers tests/bench_peers.sh 150
# The manual pages render and document every command, option and
# function (scdoc, man).
run_script test_man tests/man.sh 60
# shmbus-bench-scale's five sweeps, tables and plots, from a quick run
# (about 10 s).
run_script test_bench_scale tests/bench_scale.sh 150

[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
