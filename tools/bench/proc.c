// SPDX-License-Identifier: MIT
/*
 * proc.c - what both benchmark programs (shmbus-bench and
 * shmbus-bench-durable) need of their processes: which one is the parent,
 * dying with a message (the parent exits, a child _exits), and memory
 * shared with the children they fork.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

pid_t bench_main_pid;

bool in_parent(void)
{
	return getpid() == bench_main_pid;
}

void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", program_invocation_short_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (in_parent())
		exit(1);
	_exit(1);
}

void *map_shared(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap %zu bytes: %s", len, strerror(errno));
	return p;
}
