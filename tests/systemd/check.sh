#!/bin/sh
# check.sh - the test inside the systemd VM (tests/systemd/run-vm.sh),
# run by shmbus-vm-test.service once the system is up, as root, with the
# shmbus packages installed: shmbus's units under the real systemd.
# Prints "SHMBUS-VM-RESULT name status" per check (0: passed),
# "SHMBUS-VM-INFO ..." for what the host shows, SHMBUS-VM-DONE last; then
# powers the machine off. The host compares the names with its list.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0
CONF=/usr/local/lib/shmbus-vm	# run-vm.sh: what the host passes
TUSER=shmbustest

up() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v t="$1" '{ printf "%.2f", $1 - t }' /proc/uptime; }
info() { echo "SHMBUS-VM-INFO $*"; }
result() { echo "SHMBUS-VM-RESULT $1 $2"; }
# check NAME COMMAND...: the command's status is the result; what it
# printed is shown when it failed
check() {
	_n=$1; shift
	"$@" > /tmp/check.out 2>&1
	_rc=$?
	if [ $_rc -ne 0 ]; then
		sed "s/^/  $_n: /" /tmp/check.out | tail -20
	fi
	result "$_n" $_rc
}
# until SECONDS COMMAND...: COMMAND again every 0.1 s until it succeeds
until_ok() {
	_end=$(( $(date +%s) + $1 )); shift
	while ! "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$_end" ] || return 1
		sleep 0.1
	done
}
prop() { systemctl show -p "$1" --value "$2"; }
is() { [ "$(systemctl is-active "$2" 2>&1)" = "$1" ]; }
# the journal of one process (the daemon logs to stderr: the journal)
plog() { journalctl -q -o cat --no-pager "_PID=$1"; }
plog_has() { plog "$1" | grep -q -- "$2"; }
# wait for a daemon's line (journald reads the stream a little later)
wait_log() { until_ok 10 plog_has "$1" "$2"; }
eq() {
	[ "$1" = "$2" ] && return 0
	echo "got '$1', want '$2'"
	return 1
}
bus_id() { shmbus bus info 2>/dev/null | sed -n 's/.* id \([0-9]*\)).*/\1/p'; }

echo "SHMBUS-VM-BOOTED $(uname -r), systemd $(systemctl --version | sed -n '1s/systemd \([0-9]*\).*/\1/p'), $(systemctl is-system-running), up $(up) s"

# ---- the socket unit, as the package left it ------------------------------
check socket-enabled eq "$(systemctl is-enabled shmbusd.socket)" enabled
check socket-active eq "$(systemctl is-active shmbusd.socket)" active
check socket-listening sh -c 'test -S /run/shmbus/shmbusd.sock &&
	[ "$(stat -c %a /run/shmbus/shmbusd.sock)" = 666 ]'
# nothing runs until a client connects
check service-idle sh -c '
	s=$(systemctl is-active shmbusd.service)
	[ "$s" = inactive ] || { echo "shmbusd.service: $s"; exit 1; }
	! pgrep -a -x shmbusd'

# ---- socket activation -------------------------------------------------------
t=$(up)
out=$(shmbus queue declare q 2>&1 && echo m1 | shmbus pub q 2>&1 &&
	shmbus sub q -n 1 --timeout 20 2>&1)
check activation-pubsub eq "$(echo "$out" | tail -1)" m1
info "declare, pub and sub, the daemon started by the first: $(since "$t") s"
check activation-active eq "$(systemctl is-active shmbusd.service)" active
pid=$(prop MainPID shmbusd.service)
info "shmbusd.service MainPID $pid: $(tr '\0' ' ' < /proc/$pid/cmdline)"
# the one daemon is the service's (no client autostarted one of its own),
# and it holds the lock beside the socket
check activation-one-daemon sh -c "
	[ \"\$(pgrep -x shmbusd)\" = $pid ] || { pgrep -a -x shmbusd; exit 1; }
	[ \"\$(cat /run/shmbus/shmbusd.sock.lock)\" = $pid ]"
check activation-log wait_log "$pid" \
	"listening on the socket the service manager passed"
plog "$pid" | grep -E 'listening|service manager' | sed 's/^/  log: /'

# ---- Type=notify: active once READY=1 came -------------------------------------
check notify-type eq "$(prop Type shmbusd.service)" notify
# STATUS= comes with READY=1, and again as buses come and go: the first
# client's bus
st=$(prop StatusText shmbusd.service)
info "StatusText: $st"
check notify-status eq "$st" "serving 1 bus"
# the service became active after the daemon listened: its log line's
# time (ms) against the manager's ActiveEnterTimestamp (us), one clock
notify_order() {
	line=$(plog "$1" | grep -m1 'listening on the socket')
	ts=$(echo "$line" | cut -d' ' -f1)	# 2026-01-02T03:04:05.678Z
	l_ms=$(date -u -d "$(echo "$ts" | sed 's/T/ /; s/Z$//')" +%s%3N)
	a_us=$(busctl get-property org.freedesktop.systemd1 \
		/org/freedesktop/systemd1/unit/shmbusd_2eservice \
		org.freedesktop.systemd1.Unit ActiveEnterTimestamp | cut -d' ' -f2)
	s_us=$(busctl get-property org.freedesktop.systemd1 \
		/org/freedesktop/systemd1/unit/shmbusd_2eservice \
		org.freedesktop.systemd1.Service ExecMainStartTimestamp | cut -d' ' -f2)
	echo "started $s_us us, listening $l_ms ms, active $a_us us"
	[ -n "$l_ms" ] && [ -n "$a_us" ] && [ $((l_ms * 1000)) -le "$a_us" ] &&
		[ "$s_us" -le $((l_ms * 1000 + 999)) ]
}
check notify-order notify_order "$pid"
info "$(cat /tmp/check.out)"

# ---- the fd store: systemctl restart -------------------------------------------
id=$(bus_id)
info "bus default: id $id"
echo m2 | shmbus pub q >/dev/null 2>&1
t=$(up)
systemctl restart shmbusd.service
info "systemctl restart shmbusd.service: $(since "$t") s"
pid2=$(prop MainPID shmbusd.service)
check restart-new-daemon sh -c "[ '$pid2' != '$pid' ] && [ '$pid2' -gt 0 ] &&
	[ \"\$(systemctl is-active shmbusd.service)\" = active ]"
check restart-fdstore wait_log "$pid2" "fd store: arena-$(printf %08x "$id") is bus 0:default"
plog "$pid2" | grep -E 'fd store|service manager' | sed 's/^/  log: /'
# READY=1 came after the adoption: the bus is counted
check restart-status eq "$(prop StatusText shmbusd.service)" "serving 1 bus"
check restart-same-bus eq "$(bus_id)" "$id"
check restart-message eq "$(shmbus sub q -n 1 --timeout 20 2>&1 | tail -1)" m2

# ---- the fd store: kill -9, Restart=on-failure -----------------------------------
# a client holds the bus open across the crash: its subscription goes on
shmbus queue declare held >/dev/null
shmbus sub held -n 1 --timeout 60 > /tmp/held.out 2>&1 &
held=$!
until_ok 10 sh -c "shmbus stat | awk '\$1 == \"held\" { f = \$13 >= 1 } END { exit !f }'"
nr=$(prop NRestarts shmbusd.service)
t=$(up)
kill -9 "$pid2"
until_ok 30 sh -c "p=\$(systemctl show -p MainPID --value shmbusd.service);
	[ \"\$p\" != 0 ] && [ \"\$p\" != $pid2 ] &&
	[ \"\$(systemctl is-active shmbusd.service)\" = active ]"
pid3=$(prop MainPID shmbusd.service)
info "kill -9 $pid2: daemon $pid3 active after $(since "$t") s"
check kill9-restarted sh -c "[ '$pid3' != '$pid2' ] && [ '$pid3' -gt 0 ] &&
	[ $(prop NRestarts shmbusd.service) -gt $nr ]"
check kill9-fdstore wait_log "$pid3" "fd store: arena-$(printf %08x "$id") is bus 0:default"
plog "$pid3" | grep -E 'fd store|service manager|adopt' | sed 's/^/  log: /'
check kill9-same-bus eq "$(bus_id)" "$id"
echo m3 | shmbus pub held >/dev/null 2>&1
wait "$held"
check kill9-held-client eq "$(tail -1 /tmp/held.out)" m3

# ---- stop --------------------------------------------------------------------------
t=$(up)
systemctl stop shmbusd.service shmbusd.socket
info "systemctl stop shmbusd.service shmbusd.socket: $(since "$t") s"
check stop sh -c "
	for u in shmbusd.service shmbusd.socket; do
		s=\$(systemctl is-active \$u); r=\$(systemctl show -p Result --value \$u)
		echo \"\$u: \$s, result \$r\"
		[ \"\$s\" = inactive ] && [ \"\$r\" = success ] || exit 1
	done
	[ \"\$(systemctl show -p ExecMainStatus --value shmbusd.service)\" = 0 ] &&
	! pgrep -a -x shmbusd"
check stop-log wait_log "$pid3" "stopped"

# ---- the unit files --------------------------------------------------------------------
mkdir -p /tmp/units
cp /lib/systemd/system/shmbus-bridge@.service /tmp/units/shmbus-bridge@test.service
check verify systemd-analyze verify --man=no /lib/systemd/system/shmbusd.socket \
	/lib/systemd/system/shmbusd.service /tmp/units/shmbus-bridge@test.service
cat /tmp/check.out | sed 's/^/  verify: /'
systemd-analyze security --no-pager shmbusd.service > /tmp/security.out 2>&1
exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' /tmp/security.out)
want=$(cat "$CONF/exposure")
info "systemd-analyze security shmbusd.service: exposure ${exposure:-?} (the documented $want)"
grep -E '^✗' /tmp/security.out | sed 's/^/  security: /' | head -40
check security awk "BEGIN { exit !(\"${exposure:-99}\" != \"\" && ${exposure:-99} <= $want) }"
b=$(systemd-analyze security --no-pager shmbus-bridge@test.service 2>/dev/null |
	sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*.*\)/\1/p')
info "systemd-analyze security shmbus-bridge@test.service: ${b:-?}"

# ---- a user's daemon: the user units under the user's manager ----------------------
uid=$(id -u $TUSER)
U="runuser -u $TUSER -- env XDG_RUNTIME_DIR=/run/user/$uid"
t=$(up)
loginctl enable-linger $TUSER
check user-linger until_ok 60 sh -c "[ \"\$(systemctl is-active user@$uid.service)\" = active ] &&
	test -S /run/user/$uid/systemd/private"
info "loginctl enable-linger: user@$uid.service up after $(since "$t") s"
check user-verify $U systemd-analyze --user verify --man=no \
	/usr/lib/systemd/user/shmbusd.socket /usr/lib/systemd/user/shmbusd.service
check user-socket sh -c "$U systemctl --user enable --now shmbusd.socket &&
	[ \"\$($U systemctl --user is-active shmbusd.socket)\" = active ] &&
	test -S /run/user/$uid/shmbus/shmbusd.sock &&
	[ \"\$($U systemctl --user is-active shmbusd.service)\" = inactive ]"
out=$($U sh -c 'shmbus queue declare uq && echo u1 | shmbus pub uq &&
	shmbus sub uq -n 1 --timeout 20' 2>&1)
check user-activation-pubsub eq "$(echo "$out" | tail -1)" u1
upid=$($U systemctl --user show -p MainPID --value shmbusd.service)
check user-activation sh -c "[ \"\$($U systemctl --user is-active shmbusd.service)\" = active ] &&
	[ \"\$(ps -o user= -p $upid)\" = $TUSER ] &&
	[ \"\$($U systemctl --user show -p StatusText --value shmbusd.service)\" = 'serving 1 bus' ]"
check user-activation-log wait_log "$upid" \
	"listening on the socket the service manager passed"
uid_bus=$($U shmbus bus info 2>/dev/null | sed -n 's/.* id \([0-9]*\)).*/\1/p')
echo u2 | $U shmbus pub uq >/dev/null 2>&1
$U systemctl --user restart shmbusd.service
upid2=$($U systemctl --user show -p MainPID --value shmbusd.service)
check user-restart-fdstore wait_log "$upid2" "fd store: arena-$(printf %08x "${uid_bus:-0}") is bus $uid:default"
plog "$upid2" | grep -E 'fd store|service manager' | sed 's/^/  log: /'
check user-restart-message eq "$($U shmbus sub uq -n 1 --timeout 20 2>&1 | tail -1)" u2
$U systemctl --user stop shmbusd.service shmbusd.socket
check user-stop sh -c "[ \"\$($U systemctl --user is-active shmbusd.service)\" = inactive ] &&
	[ \"\$($U systemctl --user show -p Result --value shmbusd.service)\" = success ] &&
	! pgrep -a -x shmbusd"
ue=$($U systemd-analyze --user security --no-pager shmbusd.service 2>/dev/null |
	sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*.*\)/\1/p')
info "systemd-analyze --user security shmbusd.service: ${ue:-?}"

# anything that failed on the way
systemctl --failed --no-legend --plain | sed 's/^/  failed unit: /'
echo "SHMBUS-VM-DONE up $(up) s"
systemctl poweroff --no-block
