// SPDX-License-Identifier: MIT
/*
 * monitor.c - the loader of shmbus.bpf.c (monitor.h): opens and loads
 * its libbpf skeleton, attaches every program to the USDT probe of its
 * name in each file that carries it (targets.c finds them), pins the
 * maps under the pin directory, names the queues (names.c), and keeps
 * the background process that holds the links; stops it and removes the
 * pins; reads the pinned counter map and describes what was attached.
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
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "libpath.h"
#include "monitor.h"
#include "names.h"
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
 * directory, as `shmbus bridge` finds it), if there is one. */
static int add_bridge(struct target_set *ts)
{
	char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 16);
	char *slash;

	path[n > 0 ? n : 0] = '\0';
	slash = strrchr(path, '/');
	if (!slash)
		return 0;
	strcpy(slash + 1, "shmbus-bridge");
	if (access(path, X_OK))
		return 0;
	return target_add(ts, path, "beside this program", false);
}

/* Every file to attach to, one per inode; the first path found to each
 * names it. */
static int find_targets(struct monitor *m, const struct monitor_opts *o,
			char *msg, size_t len)
{
	struct target_set *ts = &m->targets;
	char lib[PATH_MAX];
	int err = 0;

	shmbus_libpath(lib);
	if (lib[0])
		err = target_add(ts, lib, "this program's library", false);
	if (!err)
		err = add_bridge(ts);
	/* files in use before the others: each is then named by the path
	 * its processes know it by */
	if (!err)
		err = targets_running(ts, o->pids, o->npids);
	if (!err)
		err = targets_installed(ts);
	for (int i = 0; !err && i < o->nlibs; i++)
		err = target_add(ts, o->libs[i], "--lib", true);
	if (err)
		return fail(msg, len, err, "looking for files with shmbus "
			    "probes: %s", strerror(-err));
	return 0;
}

static int keep_link(struct monitor *m, struct bpf_link *link)
{
	if (m->nlinks == m->caplinks) {
		int cap = m->caplinks ? 2 * m->caplinks : 32;
		struct bpf_link **n = realloc(m->links, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		m->links = n;
		m->caplinks = cap;
	}
	m->links[m->nlinks++] = link;
	return 0;
}

/* Each program whose probe @t carries, to every site of it in @t, for
 * every process (pid -1) that maps @t, now and later. On a failure the
 * file's links so far are destroyed and t->why says what failed. */
static void attach_file(struct monitor *m, struct target *t)
{
	struct bpf_object_skeleton *s = m->skel->skeleton;
	int first = m->nlinks;

	for (int i = 0; i < s->prog_cnt; i++) {
		struct bpf_program *prog = *s->progs[i].prog;
		const char *name = bpf_program__name(prog);
		struct bpf_link *link;
		int e;

		if (!target_has_probe(t, name))
			continue;
		link = bpf_program__attach_usdt(prog, -1, t->path, "shmbus",
						name, NULL);
		e = link ? keep_link(m, link) : neg_errno(errno);
		if (e) {
			bpf_link__destroy(link);
			snprintf(t->why, sizeof(t->why), "attaching probe %s: "
				 "%s", name, strerror(-e));
			break;
		}
		t->attached++;
	}
	if (!t->why[0] && !t->attached)
		snprintf(t->why, sizeof(t->why), "none of its %d shmbus probes "
			 "has a program", t->nprobes);
	if (t->why[0]) {
		while (m->nlinks > first)
			bpf_link__destroy(m->links[--m->nlinks]);
		t->attached = 0;
	}
}

static int attach_probes(struct monitor *m, char *msg, size_t len)
{
	int files = 0;

	for (int i = 0; i < m->targets.n; i++) {
		struct target *t = &m->targets.t[i];

		if (!t->why[0])
			attach_file(m, t);
		files += t->attached > 0;
	}
	if (!files)
		return fail(msg, len, -ENOENT, "no file with shmbus probes "
			    "could be attached (%d tried; shmbus monitor "
			    "status lists why after a start, --lib names "
			    "one)", m->targets.n);
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
	snprintf(path, sizeof(path), "%s/names", m->dir);
	if (!err)
		err = pin_map(m->skel->maps.names, path, msg, len);
	return err;
}

/* ---- what was attached, written down for status ------------------ */

static void state_of(const char *dir, char *buf, size_t len)
{
	char copy[PATH_MAX];

	snprintf(copy, sizeof(copy), "%s", dir);
	snprintf(buf, len, "/run/shmbus-monitor.%s.attached", basename(copy));
}

static void write_target(FILE *f, const struct target *t)
{
	if (t->why[0]) {
		fprintf(f, "not attached %s: %s (%s)\n", t->path, t->why,
			t->found);
		return;
	}
	fprintf(f, "attached %s dev %u:%u ino %llu build-id %s: %d probes "
		"(%d in the file, %d sites) (%s)\n", t->path, major(t->dev),
		minor(t->dev), (unsigned long long)t->ino,
		t->build_id[0] ? t->build_id : "none", t->attached, t->nprobes,
		t->nsites, t->found);
}

/* The files, then "program ID NAME" for each program, for
 * monitor_describe(). */
static int write_state(struct monitor *m, char *msg, size_t len)
{
	struct bpf_object_skeleton *s = m->skel->skeleton;
	char path[PATH_MAX];
	FILE *f;

	state_of(m->dir, path, sizeof(path));
	f = fopen(path, "we");
	if (!f)
		return fail(msg, len, neg_errno(errno), "%s: %s", path,
			    strerror(errno));
	for (int i = 0; i < m->targets.n; i++)
		write_target(f, &m->targets.t[i]);
	for (int i = 0; i < s->prog_cnt; i++) {
		struct bpf_program *prog = *s->progs[i].prog;
		struct bpf_prog_info info = {};
		__u32 ilen = sizeof(info);

		if (!bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info,
					    &ilen))
			fprintf(f, "program %u %s\n", info.id,
				bpf_program__name(prog));
	}
	if (fclose(f))
		return fail(msg, len, neg_errno(errno), "%s: %s", path,
			    strerror(errno));
	return 0;
}

static void destroy_links(struct monitor *m)
{
	while (m->nlinks)
		bpf_link__destroy(m->links[--m->nlinks]);
	free(m->links);
	m->links = NULL;
}

/* Undo monitor_start(): the pins and the directory if it made them, the
 * links, the programs and maps. */
static void monitor_discard(struct monitor *m)
{
	if (m->made_dir) {
		static const char *const pins[] = { "hist", "bridge", "names",
						    "qstats" };
		char path[PATH_MAX];

		for (size_t i = 0; i < sizeof(pins) / sizeof(*pins); i++) {
			snprintf(path, sizeof(path), "%s/%s", m->dir, pins[i]);
			unlink(path);
		}
		rmdir(m->dir);
		state_of(m->dir, path, sizeof(path));
		unlink(path);
	}
	destroy_links(m);
	shmbus_bpf__destroy(m->skel);
	targets_free(&m->targets);
	free(m);
}

int monitor_start(const char *dir, const struct monitor_opts *o,
		  struct monitor **out, char *msg, size_t len)
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
	err = find_targets(m, o, msg, len);
	if (err)
		goto cleanup;
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
	/* after the attach: a declare from now on is the probe's, and the
	 * fill never writes over it */
	m->named = names_fill(bpf_map__fd(m->skel->maps.names), o->pids,
			      o->npids);
	if (m->named < 0) {
		err = fail(msg, len, m->named, "naming the queues: %s",
			   strerror(-m->named));
		goto cleanup;
	}
	err = write_state(m, msg, len);
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

/* Close what the holder inherited and does not need: the caller's pipes,
 * sockets and files (a shell pipeline would otherwise never see EOF, a
 * test's publisher its stdin close). What it needs are the BPF objects
 * and the perf events of its uprobes, anonymous inodes all. */
static void close_inherited(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[64], link[64];
		int fd = atoi(de->d_name);
		ssize_t n;

		if (fd <= 2 || fd == dirfd(d))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (!strncmp(link, "anon_inode:", 11))
			continue;
		close(fd);
	}
	closedir(d);
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
	close_inherited();
	while (!stopping)
		pause();
	unlink(pidfile);
	/* the links first, then the programs; the pinned maps stay until
	 * monitor_stop() unpins them */
	destroy_links(m);
	shmbus_bpf__destroy(m->skel);
	targets_free(&m->targets);
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
	char state[PATH_MAX];
	DIR *d;
	int n;

	end_holder(dir);
	state_of(dir, state, sizeof(state));
	unlink(state);
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

/* A "program ID NAME" line of the state, with whether it is loaded. */
static void describe_program(FILE *out, const char *line)
{
	unsigned id;
	char name[64];
	int fd;

	if (sscanf(line, "program %u %63s", &id, name) != 2)
		return;
	fd = bpf_prog_get_fd_by_id(id);
	fprintf(out, "  %-14s id %u%s\n", name, id, fd < 0 ? " (gone)" : "");
	if (fd >= 0)
		close(fd);
}

static const char *map_type_name(__u32 type)
{
	switch (type) {
	case BPF_MAP_TYPE_HASH: return "hash";
	case BPF_MAP_TYPE_LRU_HASH: return "lru_hash";
	default: return "map";
	}
}

/* Each object pinned under @dir: its path, id, type and size. */
static void describe_pins(FILE *out, const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);

	while (d && (de = readdir(d))) {
		struct bpf_map_info info = {};
		__u32 ilen = sizeof(info);
		char path[PATH_MAX];
		int fd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fd = bpf_obj_get(path);
		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &ilen))
			fprintf(out, "  %s: %s\n", path, strerror(errno));
		else
			fprintf(out, "  %s  map id %u, %s, %u of %u-byte "
				"values at most\n", path, info.id,
				map_type_name(info.type), info.max_entries,
				info.value_size);
		if (fd >= 0)
			close(fd);
	}
	if (d)
		closedir(d);
}

int monitor_describe(const char *dir, FILE *out)
{
	char path[PATH_MAX], line[PATH_MAX + 512];
	bool programs = false;
	FILE *f;

	state_of(dir, path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return neg_errno(errno);
	fprintf(out, "files:\n");
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "program ", 8)) {
			fprintf(out, "  %s", line);
			continue;
		}
		if (!programs)
			fprintf(out, "programs:\n");
		programs = true;
		describe_program(out, line);
	}
	fclose(f);
	fprintf(out, "pinned:\n");
	describe_pins(out, dir);
	return 0;
}

int monitor_counters_open(struct monitor_counters *it, const char *dir)
{
	char path[PATH_MAX];

	memset(it, 0, sizeof(*it));
	snprintf(it->path, sizeof(it->path), "%s/qstats", dir);
	it->fd = bpf_obj_get(it->path);
	if (it->fd < 0)
		return neg_errno(errno);
	snprintf(path, sizeof(path), "%s/names", dir);
	it->names_fd = bpf_obj_get(path);
	return 0;
}

bool monitor_counters_next(struct monitor_counters *it,
			   struct shmbus_qkey *key, struct shmbus_qstats *v,
			   struct shmbus_names *n)
{
	struct shmbus_qkey next;

	while (bpf_map_get_next_key(it->fd, it->started ? &it->key : NULL,
				    &next) == 0) {
		it->key = next;
		it->started = true;
		if (bpf_map_lookup_elem(it->fd, &it->key, v))
			continue;	/* deleted meanwhile */
		*key = it->key;
		if (it->names_fd < 0 ||
		    bpf_map_lookup_elem(it->names_fd, key, n))
			memset(n, 0, sizeof(*n));
		return true;
	}
	return false;
}

void monitor_counters_close(struct monitor_counters *it)
{
	close(it->fd);
	if (it->names_fd >= 0)
		close(it->names_fd);
	it->fd = it->names_fd = -1;
}
