/* SPDX-License-Identifier: MIT */
/*
 * monitor.h - the loader of the BPF programs of shmbus.bpf.c, for
 * `shmbus monitor`: load them, attach them to the USDT probes of every
 * file that carries them (targets.h: each copy of libshmbus.so in use or
 * installed, programs linked with libshmbus.a, shmbus-bridge), pin their
 * maps under a directory (SHMBUS_BPF_PIN_DIR), name the queues (names.h),
 * hold the links in a background process until stopped, stop, and read
 * the pinned counters and what was attached.
 *
 * Errors are returned as -errno, with a one-line message (no newline) in
 * the caller's buffer of MONITOR_MSG_MAX bytes where the function takes
 * one; nothing here exits the caller's process or prints, but libbpf's
 * own warnings while loading, which go to stderr, and
 * monitor_describe(), which prints where it is told.
 */
#ifndef SHMBUS_BPF_MONITOR_H
#define SHMBUS_BPF_MONITOR_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "shmbus_bpf.h"
#include "targets.h"

struct shmbus_bpf;
struct bpf_link;

#define MONITOR_MSG_MAX	(2 * PATH_MAX + 128)

/* What to attach to besides what monitor_start() finds by itself. */
struct monitor_opts {
	const char *const *libs;	/* files to attach to (--lib) */
	int nlibs;
	const pid_t *pids;		/* look in these processes' maps
					 * only (--pid); every process when
					 * npids is 0 */
	int npids;
};

/* A started monitor: the programs loaded and attached, the maps pinned. */
struct monitor {
	struct shmbus_bpf *skel;	/* programs, maps */
	const char *dir;		/* the pin directory */
	struct target_set targets;	/* the files, attached or not */
	struct bpf_link **links;	/* every file's, destroyed before
					 * the skeleton */
	int nlinks, caplinks;
	char qstats[PATH_MAX];		/* the pinned counter map */
	int named;			/* rows of "names" from the arenas */
	bool made_dir;			/* dir is ours: removed on failure */
};

/*
 * Find the files that carry shmbus's probes: the libshmbus.so this
 * process runs with, shmbus-bridge beside this program, every file a
 * running process (or each of @o->pids) maps, the install paths
 * (targets_installed()) and each of @o->libs, one per inode, named by the
 * first path found to it. Load the
 * programs and attach each to its probe in every such file, with pid -1:
 * a uprobe belongs to the file, so every process that maps it, running
 * or started later, is counted. Pin the maps "qstats", "hist", "bridge"
 * and "names" under @dir, mounting bpffs on /sys/fs/bpf if it is not,
 * fill "names" from the arenas running processes map, and write down
 * what was attached (monitor_describe()). Needs root and a kernel with
 * BTF.
 *
 * A file that cannot be attached is kept in m->targets with its reason
 * (->why) and does not stop the others. Returns 0 and the monitor in
 * *@out, or -errno (-EEXIST: already started; -ENOENT: no file could be
 * attached) with @msg, having undone what it did.
 */
int monitor_start(const char *dir, const struct monitor_opts *o,
		  struct monitor **out, char *msg, size_t len);

/*
 * Hand @m to a background process that holds the links (libbpf's USDT
 * links cannot be pinned: one link is many uprobes) until SIGTERM or
 * SIGINT (monitor_stop()), then frees them and exits; its pid is in
 * /run/shmbus-monitor.NAME.pid, NAME the last part of the pin directory.
 * It lets go of the caller's stdin, stdout and stderr (flush them first)
 * and of its session, and never returns.
 *
 * Returns, in the caller, the holder's pid: @m and the links are the
 * holder's now, and the caller must leave with _exit(), whose lack of
 * cleanups (and of a leak check) leaves them alone. On failure returns
 * -errno with @msg, having undone what monitor_start() did.
 */
pid_t monitor_hold(struct monitor *m, char *msg, size_t len);

/*
 * End the holder of the monitor pinned under @dir (waiting up to 5 s for
 * it to let go of the links), then remove the pins and @dir. Returns the
 * number of pins removed, or -errno with @msg. *@started is false (and 0
 * returned) when @dir does not exist.
 */
int monitor_stop(const char *dir, bool *started, char *msg, size_t len);

/*
 * What the monitor pinned under @dir attached to, as monitor_start()
 * wrote it down (each file with its device, inode, build id and probe
 * count; the files it could not attach, with why; its programs, each
 * checked to be still loaded), and the objects pinned under @dir (id,
 * type, entries), onto @out. Returns 0, or -errno (-ENOENT: not
 * started).
 */
int monitor_describe(const char *dir, FILE *out);

/* The counter map pinned under @dir, entry by entry. */
struct monitor_counters {
	char path[PATH_MAX];		/* DIR/qstats */
	int fd;
	int names_fd;			/* DIR/names, or -1 (a monitor
					 * started before it had names) */
	bool started;			/* a key was read */
	struct shmbus_qkey key;		/* the last one */
};

/* Open @it on the map under @dir: 0, or -errno (-ENOENT: not started);
 * it->path is set either way. */
int monitor_counters_open(struct monitor_counters *it, const char *dir);

/* The next entry into @key, @v and its names @n (empty when unknown):
 * true, or false after the last. */
bool monitor_counters_next(struct monitor_counters *it,
			   struct shmbus_qkey *key, struct shmbus_qstats *v,
			   struct shmbus_names *n);

void monitor_counters_close(struct monitor_counters *it);

#endif /* SHMBUS_BPF_MONITOR_H */
