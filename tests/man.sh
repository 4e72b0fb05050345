#!/bin/sh
# man.sh - the manual pages render, and they document what the programs
# and the library offer:
#  - every docs/man/*.scd renders with scdoc, and man(1) formats the
#    result without a warning;
#  - shmbus(1): every command and subcommand `shmbus --help` and its
#    commands' help name, and every long option each one's --help prints;
#  - shmbusd(8): every long option of `shmbusd --help`; shmbusd.conf(5):
#    every one of them that is a line of the file;
#  - shmbus-bridge(1): every long option of `shmbus-bridge --help`;
#  - libshmbus(3): every function of the version script's public nodes.
# Each check prints what it compared; the last line is "N passed, N failed".
set -u
B=${B:-build}
MAN=docs/man
passed=0
failed=0

ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }

tmp=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT

# ---- they render ------------------------------------------------------
for src in $MAN/*.scd; do
	page=$(basename "$src" .scd)
	if ! scdoc < "$src" > "$tmp/$page" 2> "$tmp/err"; then
		bad "$page: scdoc: $(cat "$tmp/err")"
		continue
	fi
	LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$tmp/$page" \
		> "$tmp/$page.txt" 2> "$tmp/err"
	if [ -s "$tmp/err" ] || [ ! -s "$tmp/$page.txt" ]; then
		bad "$page: man: $(head -5 "$tmp/err")"
	else
		ok "$page renders ($(wc -l < "$tmp/$page.txt") lines)"
	fi
done

# long options printed by a help text: --name
options() {
	grep -o -- '--[a-z][a-z0-9-]*' | sort -u
}

# Is each word of stdin in @page's source as bold *WORD* (or *WORD* =
# for a file setting, given $2 = conf)?
documented() {
	page=$1 what=$2 missing=""
	n=0
	while read -r w; do
		n=$((n + 1))
		if [ "${3:-}" = conf ]; then
			grep -qF -- "*$w* =" "$MAN/$page.scd" || missing="$missing $w"
		else
			grep -qF -- "*$w*" "$MAN/$page.scd" || missing="$missing $w"
		fi
	done
	if [ -n "$missing" ]; then
		bad "$page: $what not documented:$missing"
	else
		ok "$page: all $n $what documented"
	fi
}

# ---- shmbus(1) --------------------------------------------------------
cli=$B/bin/shmbus
# the help's Commands part, each line cut where its description starts
# (two blanks): "queue declare NAME", "dlq list|peek|redrive", ...
"$cli" --help 2>&1 | sed -n '/^Commands:/,/^$/p' | sed 1d |
	sed -e 's/^ *//' -e 's/  .*//' > "$tmp/usage"
awk 'NF { print $1 }' "$tmp/usage" | sort -u > "$tmp/cmds"
: > "$tmp/cmdopts"
: > "$tmp/subs"
while read -r c; do
	"$cli" "$c" --help > "$tmp/h" 2>&1
	# daemon and bridge run shmbusd and shmbus-bridge, whose options
	# their own pages document (checked below)
	case $c in daemon|bridge) continue ;; esac
	options < "$tmp/h" >> "$tmp/cmdopts"
	# subcommands: "COMMAND a|b|c" or "COMMAND SUB ..." in the main help,
	# "shmbus COMMAND SUB" in the command's own
	awk -v c="$c" '$1 == c && NF > 1 { print $2 }' "$tmp/usage" |
		tr '|' '\n' | grep -E '^[a-z][a-z-]*$' > "$tmp/subs.$c"
	grep -Eo "^ *(usage: )?shmbus $c [a-z][a-z-]*" "$tmp/h" |
		awk '{ print $NF }' >> "$tmp/subs.$c"
	sort -u "$tmp/subs.$c" | while read -r s; do
		echo "$c $s" >> "$tmp/subs"
		"$cli" "$c" "$s" --help 2>&1 | options >> "$tmp/cmdopts"
	done
done < "$tmp/cmds"
"$cli" --help 2>&1 | options >> "$tmp/cmdopts"
sort -u "$tmp/cmdopts" | grep -vx -- '--help' > "$tmp/o"
ncmd=$(wc -l < "$tmp/cmds")
if [ "$ncmd" -lt 10 ]; then
	bad "shmbus --help lists only $ncmd commands: the parsing above broke"
fi
documented shmbus.1 commands < "$tmp/cmds"
# a subcommand: its words in a heading or in bold
missing=""
while read -r c s; do
	grep -qE -- "^#+ .*\\b$c $s\\b|\\*$c $s\\*|\\*$s\\*" "$MAN/shmbus.1.scd" ||
		missing="$missing '$c $s'"
done < "$tmp/subs"
if [ -n "$missing" ]; then
	bad "shmbus.1: subcommands not documented:$missing"
else
	ok "shmbus.1: all $(wc -l < "$tmp/subs") subcommands documented"
fi
documented shmbus.1 "long options" < "$tmp/o"

# ---- shmbusd(8), shmbusd.conf(5) ---------------------------------------
"$B/bin/shmbusd" --help | options > "$tmp/d"
documented shmbusd.8 "long options" < "$tmp/d"
# the file's settings: every option but those of the command line only
grep -vxE -- '--(config|no-config|daemonize|verbose|help)' "$tmp/d" |
	sed 's/^--//' > "$tmp/conf"
documented shmbusd.conf.5 settings conf < "$tmp/conf"

# ---- shmbus-bridge(1) --------------------------------------------------
"$B/bin/shmbus-bridge" --help 2>&1 | options > "$tmp/b"
documented shmbus-bridge.1 "long options" < "$tmp/b"

# ---- libshmbus(3) -------------------------------------------------------
# the public nodes' global names (not the SHMBUS_PRIVATE node)
awk '/^SHMBUS_[0-9]/ { pub = 1 } /^SHMBUS_PRIVATE/ { pub = 0 }
     pub && /^[ \t]+shmbus[a-z_0-9]*;/ { gsub(/[ \t;]/, ""); print }' \
	userspace/lib/libshmbus.map | sort -u > "$tmp/f"
nf=$(wc -l < "$tmp/f")
[ "$nf" -ge 40 ] || bad "libshmbus.map: only $nf public functions found"
missing=""
while read -r f; do
	grep -qF -- "*$f*(" "$MAN/libshmbus.3.scd" || missing="$missing $f"
done < "$tmp/f"
if [ -n "$missing" ]; then
	bad "libshmbus.3: functions not documented:$missing"
else
	ok "libshmbus.3: all $nf public functions documented"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
