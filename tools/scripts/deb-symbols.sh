#!/bin/sh
# deb-symbols.sh MAP - the Debian symbols file of libshmbus0, from the
# version script MAP: each public node SHMBUS_X.Y brings its functions in
# version X.Y.0, so a program gets a dependency on the release that first
# had every function it calls. The daemon's private node (its name holds
# a hash of the headers) matches one exact build: it is listed by a
# pattern, and package shmbus depends on exactly its libshmbus0.
set -eu
map=$1
echo "libshmbus.so.0 libshmbus0 #MINVER#"
echo "* Build-Depends-Package: libshmbus-dev"
awk '
/^SHMBUS_[0-9]+\.[0-9]+ *\{/ {
	node = $1; ver = substr(node, 8) ".0"
	printf " %s@%s %s\n", node, node, ver
	next
}
/^}/ { node = "" }
node != "" && /^[ \t]+shmbus[a-z_0-9]*;/ {
	sym = $1; sub(/;$/, "", sym)
	printf " %s@%s %s\n", sym, node, ver
}' "$map" | sort
ver=$(awk '/^SHMBUS_[0-9]+\.[0-9]+ *\{/ { v = substr($1, 8) } END { print v ".0" }' "$map")
echo " (regex|optional)\"^__shmbus_.*@SHMBUS_PRIVATE_\" $ver"
echo " (regex|optional)\"^SHMBUS_PRIVATE_.*@SHMBUS_PRIVATE_\" $ver"
