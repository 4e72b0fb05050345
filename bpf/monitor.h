/* SPDX-License-Identifier: MIT */
/*
 * monitor.h - the loader of the BPF programs of shmbus.bpf.c, for
 * `shmbus monitor`: load them, attach them to the USDT probes of the
 * libshmbus.so this process runs with, pin their maps under a directory
 * (SHMBUS_BPF_PIN_DIR), hold the links in a background process until
 * stopped, stop, and read the pinned counters.
 *
 * Errors are returned as -errno, with a one-line message (no newline) in
 * the caller's buffer of MONITOR_MSG_MAX bytes where the function takes
 * one; nothing here exits the caller's process or prints, but libbpf's
 * own warnings while loading, which go to stderr.
 */
#ifndef SHMBUS_BPF_MONITOR_H
#define SHMBUS_BPF_MONITOR_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "shmbus_bpf.h"

struct shmbus_bpf;

#define MONITOR_MSG_MAX	(2 * PATH_MAX + 128)

/* A started monitor: the programs loaded and attached, the maps pinned. */
struct monitor {
	struct shmbus_bpf *skel;	/* programs, their links, maps */
	const char *dir;		/* the pin directory */
	char lib[PATH_MAX];		/* the libshmbus.so attached to */
	char bridge[PATH_MAX];		/* shmbus-bridge beside this
					 * program, or "" (its probes are
					 * then not attached) */
	char qstats[PATH_MAX];		/* the pinned counter map */
	bool made_dir;			/* dir is ours: removed on failure */
};

/*
 * Load the programs, attach them to every process that maps the library
 * (running and future: a uprobe belongs to the file), the bridge's to
 * the shmbus-bridge beside this program if there is one, and pin the maps
 * "qstats", "hist" and "bridge" under @dir, mounting bpffs on /sys/fs/bpf if it is
 * not. Needs root and a kernel with BTF. Returns 0 and the monitor in
 * *@out, or -errno (-EEXIST: already started) with @msg, having undone
 * what it did.
 */
int monitor_start(const char *dir, struct monitor **out, char *msg,
		  size_t len);

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

/* The counter map pinned under @dir, entry by entry. */
struct monitor_counters {
	char path[PATH_MAX];		/* DIR/qstats */
	int fd;
	bool started;			/* a key was read */
	struct shmbus_qkey key;		/* the last one */
};

/* Open @it on the map under @dir: 0, or -errno (-ENOENT: not started);
 * it->path is set either way. */
int monitor_counters_open(struct monitor_counters *it, const char *dir);

/* The next entry into @key and @v: true, or false after the last. */
bool monitor_counters_next(struct monitor_counters *it,
			   struct shmbus_qkey *key, struct shmbus_qstats *v);

void monitor_counters_close(struct monitor_counters *it);

#endif /* SHMBUS_BPF_MONITOR_H */
