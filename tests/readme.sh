#!/bin/sh
# readme.sh - the README's CLI example, run as it stands: the first sh
# block under "## CLI example", in a fresh bash with -e (a command that
# fails fails the test), from the top of the tree (its first line puts
# build/bin on PATH), against a daemon of its own (SHMBUS_SOCKET in a
# directory of its own) and, for the bridge lines, a RabbitMQ on
# localhost:5672: the one running there, else a private one started here
# and stopped after. Prints the block's output; checks what it must say.
# Environment: B (build dir).
set -u
B=${B:-build}
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; }

tmp=$(mktemp -d "${SHMBUS_TEST_TMP:-/tmp}/shmbus-readme-XXXXXX") || exit 1
broker=""
epmd=""
cleanup() {
	[ -f "$tmp/d.sock.lock" ] && kill "$(cat "$tmp/d.sock.lock")" 2>/dev/null
	[ -n "$broker" ] && kill "$broker" 2>/dev/null
	[ -n "$epmd" ] && kill "$epmd" 2>/dev/null
	sleep 0.5
	[ -n "$broker" ] && pkill -9 -f "$tmp/rmq" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# the block, exactly
awk '/^## CLI example/ { on = 1 } on && /^```sh/ { inb = 1; next }
     inb && /^```/ { exit } inb { print }' README.md > "$tmp/block.sh"
lines=$(wc -l < "$tmp/block.sh")
[ "$lines" -gt 10 ] || { bad "README: no CLI block found"; echo "$passed passed, $failed failed"; exit 1; }
[ "$B" = build ] || sed -i "s|\$PWD/build/bin|$(cd "$B" && pwd)/bin|" "$tmp/block.sh"

# a broker on localhost:5672, as the block assumes
listening() { timeout 1 bash -c "</dev/tcp/127.0.0.1/$1" 2>/dev/null; }
if ! listening 5672; then
	mkdir -p "$tmp/rmq/mnesia" "$tmp/rmq/log"
	: > "$tmp/rmq/rabbitmq.conf"
	: > "$tmp/rmq/rabbitmq-env.conf"
	echo '[].' > "$tmp/rmq/advanced.config"
	echo '[].' > "$tmp/rmq/enabled_plugins"
	port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
	export RABBITMQ_NODENAME=shmbusreadme@localhost RABBITMQ_NODE_PORT=5672 \
	       RABBITMQ_DIST_PORT=$(port) ERL_EPMD_PORT=$(port) \
	       RABBITMQ_MNESIA_BASE=$tmp/rmq/mnesia RABBITMQ_LOG_BASE=$tmp/rmq/log \
	       RABBITMQ_CONFIG_FILE=$tmp/rmq/rabbitmq.conf \
	       RABBITMQ_ADVANCED_CONFIG_FILE=$tmp/rmq/advanced.config \
	       RABBITMQ_CONF_ENV_FILE=$tmp/rmq/rabbitmq-env.conf \
	       RABBITMQ_ENABLED_PLUGINS_FILE=$tmp/rmq/enabled_plugins \
	       RABBITMQ_PID_FILE=$tmp/rmq/rabbitmq.pid HOME=$tmp/rmq
	epmd -port "$ERL_EPMD_PORT" > "$tmp/rmq/epmd.log" 2>&1 &
	epmd=$!
	/usr/lib/rabbitmq/bin/rabbitmq-server > "$tmp/rmq/server.log" 2>&1 &
	broker=$!
	echo "starting a private rabbitmq-server on localhost:5672"
	for i in $(seq 1 120); do
		listening 5672 && break
		sleep 0.5
	done
	if ! listening 5672; then
		tail -20 "$tmp/rmq/server.log"
		bad "rabbitmq-server on localhost:5672"
		echo "$passed passed, $failed failed"
		exit 1
	fi
	unset RABBITMQ_NODENAME RABBITMQ_NODE_PORT RABBITMQ_DIST_PORT \
	      RABBITMQ_MNESIA_BASE RABBITMQ_LOG_BASE RABBITMQ_CONFIG_FILE \
	      RABBITMQ_ADVANCED_CONFIG_FILE RABBITMQ_CONF_ENV_FILE \
	      RABBITMQ_ENABLED_PLUGINS_FILE RABBITMQ_PID_FILE ERL_EPMD_PORT
fi

# the block, in a fresh bash, as a user would paste it
t0=$(date +%s)
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	HOME="$tmp" XDG_STATE_HOME="$tmp/state" SHMBUS_SOCKET="$tmp/d.sock" \
	LANG=C.UTF-8 bash -e "$tmp/block.sh" > "$tmp/out" 2>&1
rc=$?
sed 's/^/  | /' "$tmp/out"
check() { name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
check "the block ran to its end, $lines lines ($(( $(date +%s) - t0 )) s, exit $rc)" [ $rc -eq 0 ]
has() { grep -qF -- "$1" "$tmp/out"; }
check "sub wrote a b c" sh -c "grep -qx a '$tmp/out' && grep -qx b '$tmp/out' && grep -qx c '$tmp/out'"
check "boom nacked 5 times, then dead-lettered" \
	sh -c "[ \$(grep -c 'the command exited 1; given back' '$tmp/out') -eq 5 ]"
check "pub to a durable queue confirmed 1000" has "published 1000 messages to orders, 1000 confirmed"
check "both groups got the order" sh -c "[ \$(grep -cx '{\"id\": 1001}' '$tmp/out') -eq 2 ]"
check "req got its reply" sh -c "grep -qx latte '$tmp/out'"
check "hello crossed the broker from bus a to bus b" sh -c "grep -qx hello '$tmp/out'"
check "stat shows the delayed message (DELAYED 1)" \
	sh -c "grep -qE '^jobs +[0-9]+ +[0-9]+ +1 ' '$tmp/out'"
check "stat --format json ran" has '"queues":[{"name":"jobs.dlq"' 
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
