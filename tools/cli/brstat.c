// SPDX-License-Identifier: MIT
/*
 * brstat.c - the running bridges of a bus, read from the stats files
 * they write beside the daemon's socket (tools/bridge/statfile.h), for
 * `shmbus stat` and `shmbus metrics`. A file whose process is gone (or
 * is another process that got its pid since) is not shown, and removed
 * when it is ours to remove.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "../bridge/statfile.h"

/* One file into @b: 0, or -1 if it is not one of a live bridge of @bus
 * (@stale: its process is gone). */
static int read_one(const char *path, const char *bus, struct cli_bridge *b,
		    bool *stale)
{
	char line[512], name[64];
	unsigned long long start = 0;
	long long ms = 0;
	int version = 0, pid = 0;
	struct timespec now;
	FILE *f = fopen(path, "r");

	*stale = false;
	memset(b, 0, sizeof(*b));
	if (!f)
		return -1;
	if (!fgets(line, sizeof(line), f) ||
	    sscanf(line, "shmbus-bridge %d", &version) != 1 ||
	    version != BR_STATFILE_VERSION ||
	    !fgets(line, sizeof(line), f) ||
	    sscanf(line, "pid %d start %llu time %lld", &pid, &start,
		   &ms) != 3 ||
	    !fgets(line, sizeof(line), f) ||
	    sscanf(line, "bus %63s", name) != 1 || strcmp(name, bus))
		goto fail;
	if (pid <= 0 || !start || br_pid_start(pid) != start) {
		*stale = true;
		goto fail;
	}
	b->pid = pid;
	clock_gettime(CLOCK_REALTIME, &now);
	b->age_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000 - ms;
	while (fgets(line, sizeof(line), f) && b->n < CLI_BRIDGE_ROUTES) {
		struct cli_bridge_route *r = &b->routes[b->n];
		char dir[4];
		int off = 0;

		line[strcspn(line, "\n")] = '\0';
		if (sscanf(line, "route %3s %llu %llu %llu %llu %llu %llu %llu "
			   "%lld %llu %llu %llu %n", dir, &r->blocked,
			   &r->forwarded, &r->confirmed, &r->nacked,
			   &r->redelivered, &r->reconnects, &r->inflight,
			   &r->lag, &r->blocks, &r->extended, &r->rejected,
			   &off) != 12 ||
		    !off || !line[off])
			continue;
		r->out = !strcmp(dir, "out");
		snprintf(r->name, sizeof(r->name), "%s", line + off);
		b->n++;
	}
	fclose(f);
	return 0;
fail:
	fclose(f);
	return -1;
}

int cli_bridges(const char *bus, struct cli_bridge **out)
{
	char dir[PATH_MAX], prefix[80];
	struct cli_bridge *v = NULL;
	struct dirent *de;
	int n = 0;
	DIR *d;

	*out = NULL;
	if (br_statfile_dir(cli_socket(), dir, sizeof(dir)) < 0)
		return 0;
	d = opendir(dir);
	if (!d)
		return 0;
	snprintf(prefix, sizeof(prefix), "bridge.%s.", bus);
	while ((de = readdir(d))) {
		char path[PATH_MAX + 300];
		const char *p = de->d_name;
		size_t k = strlen(prefix), len = strlen(p);
		struct cli_bridge *nv;
		bool stale;

		/* bridge.BUS.PID.stat: digits between the two */
		if (strncmp(p, prefix, k) || len < k + 6 ||
		    strcmp(p + len - 5, ".stat") ||
		    strspn(p + k, "0123456789") != len - k - 5)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, p);
		nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv)
			break;
		v = nv;
		if (read_one(path, bus, &v[n], &stale) == 0)
			n++;
		else if (stale)
			unlink(path);	/* a killed bridge's; EACCES: not ours */
	}
	closedir(d);
	*out = v;
	return n;
}
