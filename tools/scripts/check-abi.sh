#!/bin/sh
# check-abi.sh LIB MAP HEADER OBJS - fail the build when libshmbus's ABI
# and its version disagree (docs/decisions.md, "Versioning"):
#  1. the newest node of the version script MAP is SHMBUS_<MAJOR>.<MINOR>
#     of the version HEADER (shmbus.h) defines;
#  2. the shared library LIB exports exactly the public symbols MAP lists,
#     each in the node MAP puts it in (none missing, none extra, none
#     moved to another node);
#  3. every internal it exports for the daemon (__shmbus_*) is in the
#     SHMBUS_PRIVATE_* node, and nothing else is;
#  4. every function the objects OBJS (an archive of the library's
#     objects) define with default visibility (SHMBUS_API) is in the
#     version script: one that is not would be hidden by its "local: *"
#     and missing from the library.
set -eu

lib=$1 map=$2 hdr=$3 objs=$4
me=check-abi
fail() { echo "$me: $*" >&2; exit 1; }

ver() { sed -n "s/^#define SHMBUS_VERSION_$1[[:space:]]*\([0-9][0-9]*\).*/\1/p" "$hdr"; }
major=$(ver MAJOR)
minor=$(ver MINOR)
[ -n "$major" ] && [ -n "$minor" ] || fail "$hdr: no SHMBUS_VERSION_MAJOR/MINOR"

newest=$(grep -oE '^SHMBUS_[0-9]+\.[0-9]+' "$map" | sed 's/^SHMBUS_//' |
	 sort -V | tail -n 1)
[ "$newest" = "$major.$minor" ] ||
	fail "$hdr says version $major.$minor but the newest node of $map is" \
	     "SHMBUS_$newest: bump the version with every new node (and add a" \
	     "node for every new symbol)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# name@@NODE for every public symbol the version script lists
awk '
	/^SHMBUS_[0-9.]+[ \t]*\{/ { node = $1; next }
	/^\}/ { node = ""; next }
	node != "" && /^[ \t]+[A-Za-z_][A-Za-z0-9_]*;/ {
		s = $1; sub(/;.*/, "", s); print s "@@" node
	}' "$map" | sort > "$tmp/want"
[ -s "$tmp/want" ] || fail "$map: no symbols found"

# name@@NODE for every symbol the library defines and exports
nm -D --defined-only "$lib" | awk '$2 != "A" { print $3 }' | sort > "$tmp/all"
grep -v '^__shmbus_' "$tmp/all" > "$tmp/have" || true
grep '^__shmbus_' "$tmp/all" > "$tmp/priv" || true

if ! cmp -s "$tmp/want" "$tmp/have"; then
	echo "$me: $lib exports other symbols than $map lists:" >&2
	comm -23 "$tmp/want" "$tmp/have" | sed 's/^/  listed, not exported: /' >&2
	comm -13 "$tmp/want" "$tmp/have" | sed 's/^/  exported, not listed: /' >&2
	exit 1
fi
# what the code declares public: defined, global, default visibility
readelf -sW "$objs" | awk '$5 == "GLOBAL" && $6 == "DEFAULT" && $7 != "UND" &&
	$8 !~ /^__shmbus_/ { print $8 }' | sort -u > "$tmp/api"
sed 's/@@.*//' "$tmp/want" | sort -u > "$tmp/listed"
if ! cmp -s "$tmp/api" "$tmp/listed"; then
	echo "$me: the code's SHMBUS_API symbols and $map differ:" >&2
	comm -23 "$tmp/api" "$tmp/listed" |
		sed 's/^/  SHMBUS_API, not in the version script (hidden): /' >&2
	comm -13 "$tmp/api" "$tmp/listed" |
		sed 's/^/  in the version script, not SHMBUS_API: /' >&2
	exit 1
fi
bad=$(grep -v '@@SHMBUS_PRIVATE_' "$tmp/priv" || true)
[ -z "$bad" ] || fail "internals outside the private node: $bad"
n_pub=$(wc -l < "$tmp/have")
n_priv=$(wc -l < "$tmp/priv")
[ -z "${V:-}" ] || echo "$me: version $major.$minor, $n_pub public and $n_priv private symbols"
exit 0
