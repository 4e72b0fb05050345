// SPDX-License-Identifier: MIT
/*
 * memory.c - the daemon-wide memory budget for arenas.
 *
 * An arena's pages are fallocate()d by the daemon, so they are charged to
 * the daemon's memory cgroup; asking for more than that cgroup can hold
 * would not fail the fallocate, it would run the OOM killer, which picks
 * the daemon and every bus it serves. So before an arena is made, its size
 * is checked against:
 *
 *  - the per-bus limit (--bus-max, default 1 GiB) and the configured total
 *    of all live arenas (--memory-max, default none): over either,
 *    -EDQUOT, a limit the operator set;
 *  - what the memory is there for, read again at every creation: the room
 *    left under memory.max (cgroup v2) or memory.limit_in_bytes (v1) of
 *    the daemon's memory cgroup and of each of its ancestors, and
 *    MemAvailable, less MEM_HEADROOM kept for the daemon itself and the
 *    page tables of its own mapping of the arena: over it, -ENOMEM.
 *
 * Other processes of the cgroup can still grow between the check and the
 * fallocate; MEM_HEADROOM is what absorbs that.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmbusd.h"

/* Kept free for the daemon's own growth and its cgroup's other tenants. */
#define MEM_HEADROOM	(16ULL << 20)
/* Limits at or above this are "no limit" (cgroup v1 writes ~2^63). */
#define NO_LIMIT	(1ULL << 62)

/* The first line of @path as a number; "max" is NO_LIMIT. 0 or -errno. */
static int read_u64(const char *path, uint64_t *v)
{
	char buf[64];
	FILE *f = fopen(path, "re");
	int err = 0;

	if (!f)
		return -errno;
	if (!fgets(buf, sizeof(buf), f))
		err = -EIO;
	else if (!strncmp(buf, "max", 3))
		*v = NO_LIMIT;
	else
		*v = strtoull(buf, NULL, 10);
	fclose(f);
	return err;
}

/* A field of /proc/meminfo ("MemAvailable:"), in bytes; 0 if absent. */
static uint64_t meminfo(const char *field)
{
	char line[128];
	size_t n = strlen(field);
	uint64_t v = 0;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, field, n)) {
			v = strtoull(line + n, NULL, 10);
			if (strstr(line + n, "kB"))
				v *= 1024;
			break;
		}
	}
	fclose(f);
	return v;
}

/*
 * The directory of this process's memory cgroup: cgroup v2 when its
 * hierarchy has the memory controller (memory.max present), else the v1
 * memory hierarchy. *@top is the hierarchy's mount point. 1 = v2, 2 = v1,
 * 0 = none found.
 */
static int cgroup_dir(char *dir, size_t len, char *top, size_t toplen)
{
	char line[1024], v1path[512] = "", v2path[512] = "";
	char v1mnt[256] = "", v2mnt[256] = "", probe[1100];
	FILE *f = fopen("/proc/self/cgroup", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (!c2)
			continue;
		c2[strcspn(c2, "\n")] = '\0';
		*c2 = '\0';
		if (!strcmp(c1 + 1, ""))
			snprintf(v2path, sizeof(v2path), "%s", c2 + 1);
		else if (strstr(c1 + 1, "memory"))
			snprintf(v1path, sizeof(v1path), "%s", c2 + 1);
	}
	fclose(f);
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		/* id parent maj:min root mountpoint opts ... - fstype src super */
		char root[256], mnt[256], fstype[32], super[512];
		const char *sep = strstr(line, " - ");

		if (!sep || sscanf(line, "%*s %*s %*s %255s %255s", root, mnt) != 2 ||
		    sscanf(sep + 3, "%31s %*s %511s", fstype, super) != 2 ||
		    strcmp(root, "/"))
			continue;
		if (!strcmp(fstype, "cgroup2") && !v2mnt[0])
			snprintf(v2mnt, sizeof(v2mnt), "%s", mnt);
		else if (!strcmp(fstype, "cgroup") && strstr(super, "memory") &&
			 !v1mnt[0])
			snprintf(v1mnt, sizeof(v1mnt), "%s", mnt);
	}
	fclose(f);
	if (v2mnt[0] && v2path[0]) {
		snprintf(probe, sizeof(probe), "%s%s/memory.current", v2mnt,
			 strcmp(v2path, "/") ? v2path : "");
		/* the root cgroup has no memory.max, but memory.current tells
		 * the controller is on this hierarchy */
		if (!access(probe, R_OK)) {
			snprintf(dir, len, "%s%s", v2mnt,
				 strcmp(v2path, "/") ? v2path : "");
			snprintf(top, toplen, "%s", v2mnt);
			return 1;
		}
	}
	if (v1mnt[0] && v1path[0]) {
		snprintf(dir, len, "%s%s", v1mnt, strcmp(v1path, "/") ? v1path : "");
		snprintf(top, toplen, "%s", v1mnt);
		return 2;
	}
	return 0;
}

/*
 * Bytes the memory cgroups of this process can still be charged: the
 * smallest limit - usage over its memory cgroup and every ancestor,
 * NO_LIMIT when none has a limit. *@where names the one that bounds it.
 */
static uint64_t cgroup_room(char *where, size_t wlen)
{
	char dir[1024], top[256], path[1100];
	uint64_t room = NO_LIMIT;
	int v = cgroup_dir(dir, sizeof(dir), top, sizeof(top));
	const char *lim = v == 1 ? "memory.max" : "memory.limit_in_bytes";
	const char *use = v == 1 ? "memory.current" : "memory.usage_in_bytes";

	snprintf(where, wlen, "none");
	if (!v)
		return NO_LIMIT;
	for (;;) {
		uint64_t max, cur;
		char *slash;

		snprintf(path, sizeof(path), "%s/%s", dir, lim);
		if (!read_u64(path, &max) && max < NO_LIMIT) {
			snprintf(path, sizeof(path), "%s/%s", dir, use);
			if (!read_u64(path, &cur)) {
				uint64_t r = max > cur ? max - cur : 0;

				if (r < room) {
					room = r;
					snprintf(where, wlen, "%s (v%d)", dir,
						 v == 1 ? 2 : 1);
				}
			}
		}
		if (strlen(dir) <= strlen(top))
			break;
		slash = strrchr(dir, '/');
		if (!slash)
			break;
		*slash = '\0';
	}
	return room;
}

/* Bytes of the live arenas of @d. */
static uint64_t arenas_total(const struct daemon *d)
{
	uint64_t sum = 0;

	for (const struct dbus *b = d->buses; b; b = b->next)
		sum += b->committed;
	return sum;
}

#define MB(x)	((unsigned long long)((x) >> 20))

int memory_admit(const struct daemon *d, uint64_t size, char *why, size_t len)
{
	return memory_admit_more(d, 0, size, why, len);
}

int memory_admit_more(const struct daemon *d, uint64_t have, uint64_t size,
		      char *why, size_t len)
{
	uint64_t total = arenas_total(d), room, avail, need;
	char where[1100];

	if (have + size > d->bus_max) {
		snprintf(why, len, "a bus of %llu MiB is over the daemon's "
			 "per-bus limit of %llu MiB (--bus-max)",
			 MB(have + size), MB(d->bus_max));
		return -EDQUOT;
	}
	if (d->memory_max && total + size > d->memory_max) {
		snprintf(why, len, "%llu MiB more would bring the arenas to "
			 "%llu MiB, over the daemon's memory budget of %llu MiB "
			 "(--memory-max)", MB(size), MB(total + size),
			 MB(d->memory_max));
		return -EDQUOT;
	}
	room = cgroup_room(where, sizeof(where));
	avail = meminfo("MemAvailable:");
	if (!avail)		/* no /proc/meminfo: the cgroup alone */
		avail = NO_LIMIT;
	/* the daemon's own mapping of it: 8 bytes of page table a page */
	need = size + size / 512 + MEM_HEADROOM;
	if (need > room || need > avail) {
		char cg[96] = "";

		if (room < NO_LIMIT)
			snprintf(cg, sizeof(cg), "%llu MiB left in the daemon's "
				 "memory cgroup, ", MB(room));
		snprintf(why, len, "a bus of %llu MiB does not fit: %s%llu MiB "
			 "available on the host, %llu MiB kept for the daemon",
			 MB(size), cg, MB(avail), MB(MEM_HEADROOM));
		if (room < NO_LIMIT)
			log_info("memory cgroup with the least room: %s", where);
		return -ENOMEM;
	}
	return 0;
}

void memory_describe(const struct daemon *d)
{
	char where[1100], total[48] = "none", cg[64] = "none";
	uint64_t room = cgroup_room(where, sizeof(where));

	if (d->memory_max)
		snprintf(total, sizeof(total), "%llu MiB", MB(d->memory_max));
	if (room < NO_LIMIT)
		snprintf(cg, sizeof(cg), "%llu MiB", MB(room));
	log_info("memory budget: %llu MiB a bus, %s in all (--memory-max); "
		 "room in memory cgroup: %s (%s); MemAvailable %llu MiB",
		 MB(d->bus_max), total, cg, where,
		 MB(meminfo("MemAvailable:")));
}
