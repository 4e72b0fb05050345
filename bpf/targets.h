/* SPDX-License-Identifier: MIT */
/*
 * targets.h - the files `shmbus monitor` attaches to: every ELF file
 * that carries shmbus's USDT probes (stapsdt notes of provider "shmbus"),
 * whatever its name: copies of libshmbus.so, programs linked with
 * libshmbus.a, shmbus-bridge. Found in running processes' maps, at the
 * install paths, beside this program, or named by the caller; one entry
 * per file (device and inode), however many paths lead to it.
 */
#ifndef SHMBUS_TARGETS_H
#define SHMBUS_TARGETS_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TARGET_PROBES_MAX	32
#define TARGET_PROBE_NAME	32
#define TARGET_WHY_MAX		192

struct target {
	char path[PATH_MAX];		/* the first path found to it */
	dev_t dev;
	ino_t ino;
	char build_id[41];		/* hex, "" when it has none */
	char probes[TARGET_PROBES_MAX][TARGET_PROBE_NAME];	/* distinct */
	int nprobes;
	int nsites;			/* its shmbus stapsdt notes */
	char found[48];			/* how it was found */
	char why[TARGET_WHY_MAX];	/* why not attached; "" when it is */
	bool asked;			/* named by the caller (--lib) */
	int attached;			/* probes the loader attached */
};

struct target_set {
	struct target *t;
	int n, cap;
	/* files of running processes looked at that carry no probes: not
	 * read twice */
	struct { dev_t dev; ino_t ino; } *seen;
	int nseen, capseen;
};

/*
 * Add @path (found as @found) unless a file of the same device and inode
 * is in @s already (then only @asked is added to it). A file that cannot
 * be read or carries no shmbus probe is added with its reason in ->why
 * when @asked, and left out otherwise. Returns 0 or -ENOMEM.
 */
int target_add(struct target_set *s, const char *path, const char *found,
	       bool asked);

/* libshmbus.so.* in the install paths (/usr/local/lib, /usr/lib/TRIPLET,
 * /usr/lib) and shmbus-bridge in /usr/local/bin and /usr/bin. */
int targets_installed(struct target_set *s);

/* The executable file mappings of @pids (@npids; every process when 0)
 * that carry shmbus probes. */
int targets_running(struct target_set *s, const pid_t *pids, int npids);

bool target_has_probe(const struct target *t, const char *name);

void targets_free(struct target_set *s);

/*
 * Every mapping of @pids (every process when @npids is 0), line by line
 * of /proc/PID/maps: @cb gets the pid, the mapping's range and
 * permissions, its device and inode, and its path ("" when anonymous).
 * A process that is gone or unreadable is skipped. @cb returns 0 to go
 * on, else the scan stops and returns that.
 */
struct proc_map {
	pid_t pid;
	unsigned long start, end;
	char perms[5];
	dev_t dev;
	ino_t ino;
	const char *path;
};

int proc_maps_scan(const pid_t *pids, int npids,
		   int (*cb)(const struct proc_map *pm, void *ctx), void *ctx);

#endif /* SHMBUS_TARGETS_H */
