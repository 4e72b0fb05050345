/* SPDX-License-Identifier: MIT */
/*
 * statfile.h - the counters a running bridge shows to `shmbus stat` and
 * `shmbus metrics`: where its file is, and what is in it. Shared by the
 * bridge (which writes it) and the shmbus command (which reads it).
 *
 * Each bridge writes, once a second and at start, the file
 *
 *	DIR/bridge.BUS.PID.stat		(mode 0600, replaced by rename)
 *
 * DIR being the directory of the daemon's socket (the runtime directory
 * of the bus's owner), with the lines
 *
 *	shmbus-bridge 2
 *	pid PID start TICKS time MS
 *	bus BUS
 *	route DIR BLOCKED FORWARDED CONFIRMED NACKED REDELIVERED RECONNECTS
 *	      INFLIGHT LAG BLOCKS EXTENDED REJECTED NAME	(one line each)
 *
 * TICKS is the process's start time (field 22 of /proc/PID/stat): a
 * reader shows the file only while that process, and not another that
 * got its pid since, is running, so a bridge killed -9 leaves a file that
 * shows nothing. MS is CLOCK_REALTIME in milliseconds at the write. LAG
 * is -1 while unknown. REJECTED: deliveries that failed the signature
 * check. NAME, last, is the rest of the line. The bridge
 * removes its file when it stops.
 */
#ifndef SHMBUS_BRIDGE_STATFILE_H
#define SHMBUS_BRIDGE_STATFILE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BR_STATFILE_VERSION	2

/* The directory of the daemon's socket @sock (NULL: $SHMBUS_SOCKET, else
 * the library's default for this user) into @buf. 0, or -1 if too long. */
static inline int br_statfile_dir(const char *sock, char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char *slash;
	int n;

	if (!sock || !*sock)
		sock = getenv("SHMBUS_SOCKET");
	if (sock && *sock)
		n = snprintf(buf, len, "%s", sock);
	else if (geteuid() == 0)
		n = snprintf(buf, len, "/run/shmbus/shmbusd.sock");
	else if (xdg && xdg[0] == '/')
		n = snprintf(buf, len, "%s/shmbus/shmbusd.sock", xdg);
	else
		n = snprintf(buf, len, "/tmp/shmbus-%u/shmbusd.sock",
			     (unsigned)geteuid());
	if (n < 0 || (size_t)n >= len)
		return -1;
	slash = strrchr(buf, '/');
	if (!slash)
		snprintf(buf, len, ".");
	else if (slash == buf)
		buf[1] = '\0';
	else
		*slash = '\0';
	return 0;
}

/* The start time of process @pid in clock ticks since boot, or 0. */
static inline unsigned long long br_pid_start(long pid)
{
	char path[64], buf[1024], *p;
	unsigned long long t = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* after the command name, which may hold spaces and parentheses */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	/* fields 3.. follow; the start time is field 22 */
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (p)
		t = strtoull(p + 1, NULL, 10);
	return t;
}

#endif /* SHMBUS_BRIDGE_STATFILE_H */
