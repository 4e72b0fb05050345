#!/bin/sh
# kver.sh - the kernel release the module is built for: the one Debian's
# linux-headers-amd64 depends on (e.g. 6.1.0-28-amd64). Never uname -r:
# the running kernel here is not a Debian one and cannot load modules.
set -eu
dep=$(dpkg-query -W -f='${Depends}' linux-headers-amd64 2>/dev/null) || {
	echo "kver: linux-headers-amd64 is not installed (make deps)" >&2
	exit 1
}
echo "$dep" | sed -n 's/^linux-headers-\([^ ,]*\).*/\1/p'
