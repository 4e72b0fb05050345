// SPDX-License-Identifier: MIT
/*
 * util.c - diagnostics callback and reasons, option-struct checks, back-off, process
 * identity (pid + start time, which defeats pid reuse).
 */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "proto.h"

static int default_print(enum shmbus_print_level level, const char *fmt,
			 va_list ap)
{
	if (level != SHMBUS_WARN)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static shmbus_print_fn_t print_fn = default_print;

SHMBUS_API shmbus_print_fn_t shmbus_set_print(shmbus_print_fn_t fn)
{
	/* a full barrier: whatever the caller set up for @fn before this
	 * call is visible to a thread that loads @fn (the acquire in
	 * shmbus_pr()) */
	return atomic_xchg(&print_fn, fn);
}

void shmbus_pr(enum shmbus_print_level level, const char *fmt, ...)
{
	/* pairs with the exchange in shmbus_set_print() */
	shmbus_print_fn_t fn = smp_load_acquire(&print_fn);
	int saved = errno;
	va_list ap;

	if (!fn)
		return;
	va_start(ap, fmt);
	fn(level, fmt, ap);
	va_end(ap);
	errno = saved;
}

/* The reason of this thread's most recent explained failure: a daemon's
 * refusal (SBC_REASON_MAX) or the library's own, which may name paths. */
static __thread char errmsg[512];

SHMBUS_API const char *shmbus_errmsg(void)
{
	return errmsg;
}

void errmsg_set(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof(errmsg), fmt, ap);
	va_end(ap);
	errno = saved;
}

#define NAME_RULE	"1 to 63 bytes of A-Z a-z 0-9 . _ - not starting with '.'"

int name_set(char dst[SHMBUS_NAME_MAX], const char *src, const char *what)
{
	if (src && !proto_name_set(dst, src))
		return 0;
	/* the name itself stays out: it may hold any byte */
	errmsg_set("invalid %s name: a name is " NAME_RULE, what);
	return -EINVAL;
}

/* A pattern the daemon takes, without an empty token ("a..b", "a."):
 * one that no topic a publisher would name. */
int pattern_check(const char pattern[SHMBUS_NAME_MAX])
{
	size_t n = strnlen(pattern, SHMBUS_NAME_MAX);

	if (!proto_pattern_valid(pattern) && !strstr(pattern, "..") &&
	    n && pattern[n - 1] != '.')
		return 0;
	errmsg_set("invalid topic pattern: a pattern is " NAME_RULE
		   ", whose dot-separated tokens are not empty and may be '*' "
		   "(any one token) or, last, '>' (one or more)");
	return -EINVAL;
}

SHMBUS_API const char *shmbus_version(void)
{
#define STR_(x) #x
#define STR(x) STR_(x)
	return STR(SHMBUS_VERSION_MAJOR) "." STR(SHMBUS_VERSION_MINOR) "."
	       STR(SHMBUS_VERSION_PATCH);
}

bool opts_valid(const void *opts, size_t user_sz, size_t known,
		const char *type)
{
	const uint8_t *p = opts;

	if (user_sz < sizeof(size_t)) {
		pr_warn("%s: sz %zu too small (use SHMBUS_OPTS)", type, user_sz);
		return false;
	}
	for (size_t i = known; i < user_sz; i++) {
		if (p[i]) {
			pr_warn("%s: unknown non-zero option at byte %zu "
				"(built against a newer libshmbus?)", type, i);
			return false;
		}
	}
	return true;
}

void backoff_wait(unsigned round)
{
	if (round < 64) {
		cpu_relax();
	} else if (round < 64 + 2048) {
		/* a few ms of yielding: the peer we wait for is usually just
		 * being scheduled (a sleep would cost the timer slack, 50 us
		 * at least) */
		sched_yield();
	} else {
		unsigned shift = MIN(round - (64 + 2048), 7u);
		struct timespec ts = { 0, (long)(10000L << shift) };

		if (ts.tv_nsec > NSEC_PER_MSEC)
			ts.tv_nsec = NSEC_PER_MSEC;
		nanosleep(&ts, NULL);
	}
}

uint64_t pid_start_time(int pid)
{
	char path[64], buf[1024];
	ssize_t n;
	char *p;
	int fd;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* comm may hold spaces and ')': field 3 starts after the last ')' */
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return 0;
	p++;
	/* field 3 is the state: a zombie has already lost everything */
	if (p[1] == 'Z' || p[1] == 'X' || p[1] == 'x')
		return 0;
	/* fields 3..21 precede starttime (22) */
	for (int field = 3; field <= 22; field++) {
		while (*p == ' ')
			p++;
		if (field == 22)
			return strtoull(p, NULL, 10);
		p = strchr(p, ' ');
		if (!p)
			return 0;
	}
	return 0;
}
