#!/bin/sh
# check-atomics.sh - memory ordering is spelled in one place,
# userspace/lib/barrier.h (its macros say what each access pairs with).
# Fail when a C file anywhere else in user space (library, daemon, CLI,
# tests, tools, public headers) uses a compiler atomic builtin (__atomic_*,
# __sync_*), C11 atomics (<stdatomic.h>, _Atomic, atomic_*_explicit) or
# volatile other than for a signal flag (volatile sig_atomic_t) or an asm
# statement. The BPF programs (bpf/*.bpf.c: __sync_fetch_and_add is the
# BPF atomic add) and the kernel module (the kernel's own atomics) are
# out of its scope.
set -eu
cd "$(dirname "$0")/../.."

files=$(find userspace include tools tests examples bpf -name '*.[ch]' \
	! -name '*.bpf.c' ! -path userspace/lib/barrier.h | sort)
hits=$(grep -nE '__atomic_|__sync_|stdatomic\.h|_Atomic|atomic_[a-z_]*_explicit|volatile' \
	$files /dev/null |
	grep -vE 'volatile sig_atomic_t|__asm__ __volatile__|asm volatile' || true)
if [ -n "$hits" ]; then
	echo "check-atomics: use userspace/lib/barrier.h (READ_ONCE, smp_load_acquire, atomic_fetch_add, ...) instead of:" >&2
	echo "$hits" | sed 's/^/  /' >&2
	exit 1
fi
