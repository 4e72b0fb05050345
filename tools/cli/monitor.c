// SPDX-License-Identifier: MIT
/*
 * monitor.c - `shmbus monitor start|stop|status`: load the BPF programs
 * of bpf/shmbus.bpf.c, attach them to the USDT probes of the libshmbus.so
 * this program runs with (every process, present and future: uprobes are
 * attached to the file), and pin the counter map under /sys/fs/bpf/shmbus/.
 * libbpf's USDT links cannot be pinned (one link is many uprobes), so a
 * background monitor process holds them while the monitor is started;
 * stop ends it (its pid is in /run/shmbus-monitor.NAME.pid) and removes
 * the pins.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <dirent.h>
#include <stdbool.h>
#include <signal.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "shmbus.h"
#include "cli.h"
#include "libpath.h"
#include "shmbus_bpf.h"
#include "shmbus.skel.h"

#define BPF_FS_MAGIC	0xcafe4a11

/* A pin directory start made: removed again if start fails. */
static const char *undo_dir;

static __attribute__((noreturn, format(printf, 1, 2)))
void mdie(const char *fmt, ...)
{
	va_list ap;

	if (undo_dir) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/hist", undo_dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/qstats", undo_dir);
		unlink(path);
		rmdir(undo_dir);
	}

	fprintf(stderr, "shmbus: monitor: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static char lib_path[PATH_MAX];

/* bpffs at /sys/fs/bpf, mounted if it is not. */
static void ensure_bpffs(void)
{
	struct statfs st;

	if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type == BPF_FS_MAGIC)
		return;
	if (mount("bpf", "/sys/fs/bpf", "bpf", 0, NULL))
		mdie("cannot mount bpffs on /sys/fs/bpf: %s", strerror(errno));
}

static int print_libbpf(enum libbpf_print_level level, const char *fmt,
			va_list ap)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

/* Where the background monitor's pid is kept, for the pin dir @dir. */
static void pidfile_of(const char *dir, char *buf, size_t len)
{
	char copy[PATH_MAX];

	snprintf(copy, sizeof(copy), "%s", dir);
	snprintf(buf, len, "/run/shmbus-monitor.%s.pid", basename(copy));
}

static volatile sig_atomic_t stopping;

static void on_term(int sig)
{
	(void)sig;
	stopping = 1;
}

static void start(const char *dir)
{
	struct shmbus_bpf *skel;
	struct bpf_program *prog;
	char path[PATH_MAX];
	struct stat st;

	if (geteuid() != 0)
		mdie("needs root (CAP_BPF and CAP_PERFMON) to load BPF programs");
	if (access("/sys/kernel/btf/vmlinux", R_OK))
		mdie("the kernel has no BTF (/sys/kernel/btf/vmlinux): the "
		     "CO-RE programs cannot be loaded");
	ensure_bpffs();
	snprintf(path, sizeof(path), "%s/qstats", dir);
	if (stat(path, &st) == 0)
		mdie("already started (%s exists; shmbus monitor stop)", path);
	if (mkdir(dir, 0700) == 0)
		undo_dir = dir;
	else if (errno != EEXIST)
		mdie("mkdir %s: %s", dir, strerror(errno));
	shmbus_libpath(lib_path);
	if (!lib_path[0])
		mdie("cannot find the libshmbus.so this program runs with");
	libbpf_set_print(print_libbpf);
	skel = shmbus_bpf__open_and_load();
	if (!skel)
		mdie("loading the BPF programs: %s (a kernel without BPF, or "
		     "not root?)", strerror(errno));
	bpf_object__for_each_program(prog, skel->obj) {
		const char *name = bpf_program__name(prog);
		struct bpf_link *link;

		/* pid -1: every process that maps the library, now and
		 * later (a uprobe belongs to the file) */
		link = bpf_program__attach_usdt(prog, -1, lib_path, "shmbus",
						name, NULL);
		if (!link)
			mdie("attaching to usdt:%s:shmbus:%s: %s", lib_path,
			     name, strerror(errno));
		(void)link;	/* destroyed with the skeleton's object */
	}
	snprintf(path, sizeof(path), "%s/hist", dir);
	if (bpf_map__pin(skel->maps.hist, path))
		mdie("pinning %s: %s", path, strerror(errno));
	snprintf(path, sizeof(path), "%s/qstats", dir);
	if (bpf_map__pin(skel->maps.qstats, path))
		mdie("pinning %s: %s", path, strerror(errno));
	printf("monitoring %s; counters in %s "
	       "(bpftool map dump pinned %s)\n", lib_path, path, path);
	fflush(stdout);
	/* hold the links in the background until stop */
	{
		char pidfile[PATH_MAX];
		struct sigaction sa = { .sa_handler = on_term };
		pid_t kid = fork();
		FILE *f;

		if (kid < 0)
			mdie("fork: %s", strerror(errno));
		/* _exit: the links are the child's now; an exit()'s
		 * cleanups (and a leak checker) must not touch them */
		if (kid > 0)
			_exit(0);
		undo_dir = NULL;	/* started: stop removes it */
		setsid();
		pidfile_of(dir, pidfile, sizeof(pidfile));
		f = fopen(pidfile, "w");
		if (f) {
			fprintf(f, "%d\n", (int)getpid());
			fclose(f);
		}
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		/* let go of the caller's terminal or pipe (a shell pipe
		 * would otherwise wait for us) */
		if (!freopen("/dev/null", "r", stdin) ||
		    !freopen("/dev/null", "w", stdout) ||
		    !freopen("/dev/null", "w", stderr))
			_exit(1);
		while (!stopping)
			pause();
		unlink(pidfile);
		/* links go with the object; the pinned map stays until
		 * stop unpins it */
		shmbus_bpf__destroy(skel);
		exit(0);
	}
}

static void stop(const char *dir)
{
	char pidfile[PATH_MAX];
	struct dirent *de;
	FILE *f;
	DIR *d;
	int n = 0, pid = 0;

	pidfile_of(dir, pidfile, sizeof(pidfile));
	f = fopen(pidfile, "r");
	if (f) {
		if (fscanf(f, "%d", &pid) != 1)
			pid = 0;
		fclose(f);
	}
	if (pid > 0 && kill(pid, SIGTERM) == 0) {
		/* gone when its links are: wait (5 s at most) */
		for (int i = 0; i < 500 && kill(pid, 0) == 0; i++)
			usleep(10000);
	}
	d = opendir(dir);

	if (!d) {
		if (errno == ENOENT) {
			printf("not started\n");
			return;
		}
		mdie("%s: %s", dir, strerror(errno));
	}
	while ((de = readdir(d))) {
		char path[PATH_MAX];

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path))
			mdie("unlink %s: %s", path, strerror(errno));
		n++;
	}
	closedir(d);
	if (rmdir(dir))
		mdie("rmdir %s: %s", dir, strerror(errno));
	printf("stopped (%d pins removed)\n", n);
}

static void status(const char *dir)
{
	struct shmbus_qkey key, next, *prev = NULL;
	struct shmbus_qstats v;
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/qstats", dir);
	fd = bpf_obj_get(path);
	if (fd < 0) {
		printf("not started (%s: %s)\n", path, strerror(errno));
		exit(3);
	}
	printf("started: %s\n", path);
	printf("%10s %5s %10s %10s %10s %8s %8s %8s %8s %8s %8s\n", "BUS", "QID",
	       "PUBLISHED", "DELIVERED", "ACKED", "NACKED", "REDELIV",
	       "DEADLTR", "EXPIRED", "DROPPED", "WAKEUPS");
	while (bpf_map_get_next_key(fd, prev, &next) == 0) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(fd, &key, &v))
			continue;
		printf("%10u %5u %10llu %10llu %10llu %8llu %8llu %8llu %8llu "
		       "%8llu %8llu\n", key.bus, key.qid, v.published, v.delivered, v.acked,
		       v.nacked, v.redelivered, v.dead_lettered, v.expired,
		       v.dropped, v.wakeups);
	}
	close(fd);
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmbus monitor start|stop|status [--pin-dir DIR]\n"
"\n"
"start:  load the BPF programs, attach them to the USDT probes of\n"
"        libshmbus.so in every process (running and future), pin the\n"
"        links and the per-queue counter map under DIR (default\n"
"        " SHMBUS_BPF_PIN_DIR "; bpftool map dump pinned DIR/qstats).\n"
"        The daemon links the same library: it is covered too.\n"
"stop:   remove the pins: everything is detached and freed.\n"
"status: the counters. Needs root.\n");
}

int cmd_monitor(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "pin-dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = SHMBUS_BPF_PIN_DIR, *sub;
	int opt;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	sub = argv[1];
	argc--;
	argv++;
	optind = 0;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd': dir = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!strcmp(sub, "start"))
		start(dir);
	else if (!strcmp(sub, "stop"))
		stop(dir);
	else if (!strcmp(sub, "status"))
		status(dir);
	else
		mdie("unknown command '%s' (start, stop, status)", sub);
	return 0;
}
