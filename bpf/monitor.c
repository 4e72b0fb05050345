// SPDX-License-Identifier: MIT
/*
 * monitor.c - the loader of shmbus.bpf.c (monitor.h): opens and loads
 * its libbpf skeleton, attaches every program to the USDT probe of its
 * name in the libshmbus.so this process runs with, pins the maps under
 * the pin directory, and keeps the background process that holds the
 * links; stops it and removes the pins; reads the pinned counter map.
 * The other reader of the pinned maps is observe.c.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "libpath.h"
#include "monitor.h"
#include "shmbus.skel.h"

#define BPF_FS_MAGIC	0xcafe4a11

/* @msg from @fmt; returns @err. */
__attribute__((format(printf, 4, 5)))
static int fail(char *msg, size_t len, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
	return err;
}

/* -errno of the call that just failed, never 0. */
static int neg_errno(int e)
{
	return e ? -e : -EINVAL;
}

static int print_libbpf(enum libbpf_print_level level, const char *fmt,
			va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* Where the holder's pid is kept, for the pin dir @dir. */
static void pidfile_of(const char *dir, char *buf, size_t len)
{
	char copy[PATH_MAX];

	snprintf(copy, sizeof(copy), "%s", dir);
	snprintf(buf, len, "/run/shmbus-monitor.%s.pid", basename(copy));
}

/* ---- start ----------------------------------------------------------- */

/* Root, BTF, and bpffs at /sys/fs/bpf (mounted if it is not). */
static int check_can_load(char *msg, size_t len)
{
	struct statfs st;

	if (geteuid() != 0)
		return fail(msg, len, -EPERM, "needs root (CAP_BPF and "
			    "CAP_PERFMON) to load BPF programs");
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		return fail(msg, len, neg_errno(errno), "the kernel has no BTF "
			    "(/sys/kernel/btf/vmlinux): the CO-RE programs "
			    "cannot be loaded");
	if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mount("bpf", "/sys/fs/bpf", "bpf", 0, NULL)) {
		int e = errno;

		return fail(msg, len, neg_errno(e), "cannot mount bpffs on "
			    "/sys/fs/bpf: %s", strerror(e));
	}
	return 0;
}

/* m->dir, made unless it is there; not when a monitor is started. */
static int make_pin_dir(struct monitor *m, char *msg, size_t len)
{
	struct stat st;

	if (stat(m->qstats, &st) == 0)
		return fail(msg, len, -EEXIST, "already started (%s exists; "
			    "shmbus monitor stop)", m->qstats);
	if (mkdir(m->dir, 0700) == 0) {
		m->made_dir = true;
	} else if (errno != EEXIST) {
		int e = errno;

		return fail(msg, len, neg_errno(e), "mkdir %s: %s", m->dir,
			    strerror(e));
	}
	return 0;
}

/* shmbus-bridge beside this program (a build tree, or the same bin
 * directory, as `shmbus bridge` finds it) into m->bridge, or "". */
static void find_bridge(struct monitor *m)
{
	ssize_t n = readlink("/proc/self/exe", m->bridge,
			     sizeof(m->bridge) - 16);
	char *slash;

	m->bridge[n > 0 ? n : 0] = '\0';
	slash = strrchr(m->bridge, '/');
	if (!slash) {
		m->bridge[0] = '\0';
		return;
	}
	strcpy(slash + 1, "shmbus-bridge");
	if (access(m->bridge, X_OK))
		m->bridge[0] = '\0';
}

/* Each program to the probe of its name, in every process (pid -1) that
 * maps m->lib (the bridge's, bridge_*, that runs m->bridge), now and
 * later; the links are kept in the skeleton, which destroys them with
 * itself. */
static int attach_probes(struct monitor *m, char *msg, size_t len)
{
	struct bpf_object_skeleton *s = m->skel->skeleton;

	for (int i = 0; i < s->prog_cnt; i++) {
		struct bpf_program *prog = *s->progs[i].prog;
		const char *name = bpf_program__name(prog);
		const char *path = m->lib;
		struct bpf_link *link;

		if (!strncmp(name, "bridge_", 7)) {
			if (!m->bridge[0])
				continue;	/* no bridge installed */
			path = m->bridge;
		}
		link = bpf_program__attach_usdt(prog, -1, path, "shmbus",
						name, NULL);
		if (!link) {
			int e = errno;

			return fail(msg, len, neg_errno(e), "attaching to "
				    "usdt:%s:shmbus:%s: %s", path, name,
				    strerror(e));
		}
		*s->progs[i].link = link;
	}
	return 0;
}

static int pin_map(struct bpf_map *map, const char *path, char *msg,
		   size_t len)
{
	if (bpf_map__pin(map, path)) {
		int e = errno;

		return fail(msg, len, neg_errno(e), "pinning %s: %s", path,
			    strerror(e));
	}
	return 0;
}

static int pin_maps(struct monitor *m, char *msg, size_t len)
{
	char path[PATH_MAX];
	int err;

	snprintf(path, sizeof(path), "%s/hist", m->dir);
	err = pin_map(m->skel->maps.hist, path, msg, len);
	if (!err)
		err = pin_map(m->skel->maps.qstats, m->qstats, msg, len);
	snprintf(path, sizeof(path), "%s/bridge", m->dir);
	if (!err)
		err = pin_map(m->skel->maps.bridge, path, msg, len);
	return err;
}

/* Undo monitor_start(): the pins and the directory if it made them, the
 * links, the programs and maps. */
static void monitor_discard(struct monitor *m)
{
	if (m->made_dir) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/hist", m->dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/bridge", m->dir);
		unlink(path);
		unlink(m->qstats);
		rmdir(m->dir);
	}
	shmbus_bpf__destroy(m->skel);
	free(m);
}

int monitor_start(const char *dir, struct monitor **out, char *msg,
		  size_t len)
{
	struct monitor *m;
	int err;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return fail(msg, len, -ENOMEM, "out of memory");
	m->dir = dir;
	snprintf(m->qstats, sizeof(m->qstats), "%s/qstats", dir);
	err = check_can_load(msg, len);
	if (err)
		goto cleanup;
	err = make_pin_dir(m, msg, len);
	if (err)
		goto cleanup;
	shmbus_libpath(m->lib);
	if (!m->lib[0]) {
		err = fail(msg, len, -ENOENT, "cannot find the libshmbus.so "
			   "this program runs with");
		goto cleanup;
	}
	find_bridge(m);
	libbpf_set_print(print_libbpf);
	m->skel = shmbus_bpf__open_and_load();
	if (!m->skel) {
		int e = errno;

		err = fail(msg, len, neg_errno(e), "loading the BPF programs: "
			   "%s (a kernel without BPF, or not root?)",
			   strerror(e));
		goto cleanup;
	}
	err = attach_probes(m, msg, len);
	if (err)
		goto cleanup;
	err = pin_maps(m, msg, len);
	if (err)
		goto cleanup;
	*out = m;
	return 0;

cleanup:
	monitor_discard(m);
	return err;
}

/* ---- the holder ------------------------------------------------------ */

static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

/* The holder's life, from fork() to SIGTERM. The pins are not its to
 * remove: monitor_stop() does, after it is gone. */
__attribute__((noreturn))
static void hold(struct monitor *m)
{
	struct sigaction sa = { .sa_handler = on_term };
	char pidfile[PATH_MAX];
	FILE *f;

	setsid();
	pidfile_of(m->dir, pidfile, sizeof(pidfile));
	f = fopen(pidfile, "w");
	if (f) {
		fprintf(f, "%d\n", (int)getpid());
		fclose(f);
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* let go of the caller's terminal or pipe (a shell pipe would
	 * otherwise wait for us) */
	if (!freopen("/dev/null", "r", stdin) ||
	    !freopen("/dev/null", "w", stdout) ||
	    !freopen("/dev/null", "w", stderr))
		_exit(1);
	while (!stopping)
		pause();
	unlink(pidfile);
	/* the links go with the skeleton; the pinned maps stay until
	 * monitor_stop() unpins them */
	shmbus_bpf__destroy(m->skel);
	free(m);
	exit(0);
}

pid_t monitor_hold(struct monitor *m, char *msg, size_t len)
{
	pid_t kid = fork();

	if (kid < 0) {
		int e = errno;
		int err = fail(msg, len, neg_errno(e), "fork: %s", strerror(e));

		monitor_discard(m);
		return err;
	}
	if (kid == 0)
		hold(m);
	return kid;
}

/* ---- stop ------------------------------------------------------------ */

/* SIGTERM to the holder of @dir, if there is one; wait (5 s at most)
 * until it is gone, and its links with it. */
static void end_holder(const char *dir)
{
	char pidfile[PATH_MAX];
	int pid = 0;
	FILE *f;

	pidfile_of(dir, pidfile, sizeof(pidfile));
	f = fopen(pidfile, "r");
	if (f) {
		if (fscanf(f, "%d", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	if (pid > 0 && kill(pid, SIGTERM) == 0) {
		for (int i = 0; i < 500 && kill(pid, 0) == 0; i++)
			usleep(10000);
	}
}

/* Every entry of @d (in @dir) unlinked: how many, or -errno. */
static int unlink_all(DIR *d, const char *dir, char *msg, size_t len)
{
	struct dirent *de;
	int n = 0;

	while ((de = readdir(d))) {
		char path[PATH_MAX];

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path)) {
			int e = errno;

			return fail(msg, len, neg_errno(e), "unlink %s: %s",
				    path, strerror(e));
		}
		n++;
	}
	return n;
}

int monitor_stop(const char *dir, bool *started, char *msg, size_t len)
{
	DIR *d;
	int n;

	end_holder(dir);
	*started = true;
	d = opendir(dir);
	if (!d) {
		int e = errno;

		if (e == ENOENT) {
			*started = false;
			return 0;
		}
		return fail(msg, len, neg_errno(e), "%s: %s", dir, strerror(e));
	}
	n = unlink_all(d, dir, msg, len);
	closedir(d);
	if (n < 0)
		return n;
	if (rmdir(dir)) {
		int e = errno;

		return fail(msg, len, neg_errno(e), "rmdir %s: %s", dir,
			    strerror(e));
	}
	return n;
}

/* ---- status ---------------------------------------------------------- */

int monitor_counters_open(struct monitor_counters *it, const char *dir)
{
	memset(it, 0, sizeof(*it));
	snprintf(it->path, sizeof(it->path), "%s/qstats", dir);
	it->fd = bpf_obj_get(it->path);
	if (it->fd < 0)
		return neg_errno(errno);
	return 0;
}

bool monitor_counters_next(struct monitor_counters *it,
			   struct shmbus_qkey *key, struct shmbus_qstats *v)
{
	struct shmbus_qkey next;

	while (bpf_map_get_next_key(it->fd, it->started ? &it->key : NULL,
				    &next) == 0) {
		it->key = next;
		it->started = true;
		if (bpf_map_lookup_elem(it->fd, &it->key, v))
			continue;	/* deleted meanwhile */
		*key = it->key;
		return true;
	}
	return false;
}

void monitor_counters_close(struct monitor_counters *it)
{
	close(it->fd);
	it->fd = -1;
}
