// SPDX-License-Identifier: MIT
/*
 * log.c - readable daemon logs: "2026-11-27T23:02:56.123Z shmbusd[42]
 * info: ..." on stderr, or appended to a file when daemonized.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "shmbusd.h"

static FILE *logf_;
static int level_ = LOG_INFO_;

static const char *const names[] = { "error", "warn", "info", "debug" };

int dlog_open(const char *path)
{
	/* never through a link: an autostarted daemon logs beside its
	 * socket, whose directory may be a sticky world-writable one, where
	 * another user's link would have root append to any file */
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW |
		      O_CLOEXEC, 0600);
	FILE *f;

	if (fd < 0)
		return -errno;
	f = fdopen(fd, "a");
	if (!f) {
		close(fd);
		return -errno;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	logf_ = f;
	return 0;
}

void dlog_set_level(int level)
{
	level_ = level;
}

void dlog(int level, const char *fmt, ...)
{
	FILE *f = logf_ ? logf_ : stderr;
	struct timeval tv;
	struct tm tm;
	char ts[32];
	va_list ap;

	if (level > level_)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(f, "%s.%03ldZ shmbusd[%d] %s: ", ts, (long)tv.tv_usec / 1000,
		(int)getpid(), names[level]);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fflush(f);
}
