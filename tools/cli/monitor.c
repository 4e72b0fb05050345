// SPDX-License-Identifier: MIT
/*
 * monitor.c - `shmbus monitor start|stop|status`: the command around the
 * BPF loader (bpf/monitor.h): its options, usage, messages and exit
 * codes. start loads the programs of bpf/shmbus.bpf.c, attaches them to
 * the USDT probes of every file that carries them (bpf/targets.h), pins
 * the maps under /sys/fs/bpf/shmbus/ and leaves a background process
 * holding the links; stop ends that process and removes the pins; status
 * prints what was attached and the pinned counters.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "monitor.h"

static int fail(const char *msg)
{
	fprintf(stderr, "shmbus: monitor: %s\n", msg);
	return 1;
}

/* The files attached and not; how many named by --lib were not. */
static int report_targets(const struct monitor *m)
{
	int asked_failed = 0;

	for (int i = 0; i < m->targets.n; i++) {
		const struct target *t = &m->targets.t[i];

		if (!t->why[0]) {
			printf("attached %s: %d probes (%s)\n", t->path,
			       t->attached, t->found);
			continue;
		}
		fprintf(stderr, "shmbus: monitor: not attached: %s: %s (%s)\n",
			t->path, t->why, t->found);
		asked_failed += t->asked;
	}
	return asked_failed;
}

static int do_start(const char *dir, const struct monitor_opts *o)
{
	char msg[MONITOR_MSG_MAX];
	struct monitor *m;
	int werr = 0, asked_failed;

	if (monitor_start(dir, o, &m, msg, sizeof(msg)))
		return fail(msg);
	asked_failed = report_targets(m);
	printf("counters in %s (bpftool map dump pinned %s), names of %d "
	       "queues in %s/names\n", m->qstats, m->qstats, m->named, dir);
	if (asked_failed)
		fprintf(stderr, "shmbus: monitor: started without %d file%s "
			"named by --lib (shmbus monitor stop ends it)\n",
			asked_failed, asked_failed > 1 ? "s" : "");
	errno = 0;
	if (fflush(stdout) || ferror(stdout))
		werr = errno ? errno : EIO;
	if (monitor_hold(m, msg, sizeof(msg)) < 0)
		return fail(msg);
	if (werr)
		fprintf(stderr, "shmbus: monitor: started, but writing to "
			"standard output failed: %s\n", strerror(werr));
	/* _exit: the links are the holder's now; an exit()'s cleanups (and
	 * a leak checker) must not touch them */
	_exit(werr || asked_failed ? 1 : 0);
}

static int do_stop(const char *dir)
{
	char msg[MONITOR_MSG_MAX];
	bool started;
	int n = monitor_stop(dir, &started, msg, sizeof(msg));

	if (n < 0)
		return fail(msg);
	if (!started)
		printf("not started\n");
	else
		printf("stopped (%d pins removed)\n", n);
	return 0;
}

static int do_status(const char *dir)
{
	struct monitor_counters it;
	struct shmbus_qstats v;
	struct shmbus_names n;
	struct shmbus_qkey key;
	int err = monitor_counters_open(&it, dir);

	if (err) {
		printf("not started (%s: %s)\n", it.path, strerror(-err));
		return 3;
	}
	printf("started: %s\n", it.path);
	err = monitor_describe(dir, stdout);
	if (err)
		printf("(what was attached is not known: %s)\n",
		       strerror(-err));
	printf("%10s %5s %10s %10s %10s %8s %8s %8s %8s %8s %8s  %s\n", "BUS",
	       "QID", "PUBLISHED", "DELIVERED", "ACKED", "NACKED", "REDELIV",
	       "DEADLTR", "EXPIRED", "DROPPED", "WAKEUPS", "BUS/QUEUE");
	while (monitor_counters_next(&it, &key, &v, &n)) {
		printf("%10u %5u %10llu %10llu %10llu %8llu %8llu %8llu %8llu "
		       "%8llu %8llu", key.bus, key.qid, v.published,
		       v.delivered, v.acked, v.nacked, v.redelivered,
		       v.dead_lettered, v.expired, v.dropped, v.wakeups);
		if (n.queue[0])
			printf("  %s/%s%s", esc(n.bus), esc(n.queue),
			       n.kind == SHMBUS_EVENT_DELETED ? " (deleted)" :
			       "");
		putchar('\n');
	}
	monitor_counters_close(&it);
	return 0;
}

#define MONITOR_ARGS_MAX	64

/* The repeatable options of start. */
struct start_args {
	const char *libs[MONITOR_ARGS_MAX];
	pid_t pids[MONITOR_ARGS_MAX];
	int nlibs, npids;
};

/* A --lib (@opt 'l') or --pid into @a; 0, or -1 with a usage error
 * said. */
static int add_arg(struct start_args *a, int opt, const char *arg)
{
	char *end;
	long pid;

	if ((opt == 'l' ? a->nlibs : a->npids) == MONITOR_ARGS_MAX) {
		fprintf(stderr, "shmbus: monitor: more than %d --%s\n",
			MONITOR_ARGS_MAX, opt == 'l' ? "lib" : "pid");
		return -1;
	}
	if (opt == 'l') {
		a->libs[a->nlibs++] = arg;
		return 0;
	}
	errno = 0;
	pid = strtol(arg, &end, 10);
	if (errno || *end || end == arg || pid <= 0 || pid > INT_MAX) {
		fprintf(stderr, "shmbus: monitor: --pid: not a process id: "
			"%s\n", esc(arg));
		return -1;
	}
	a->pids[a->npids++] = pid;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmbus monitor start [--lib PATH]... [--pid PID]... [--pin-dir DIR]\n"
"       shmbus monitor stop|status [--pin-dir DIR]\n"
"\n"
"start:  load the BPF programs and attach them to the USDT probes of\n"
"        every file that carries them: the libshmbus.so this command\n"
"        runs with, shmbus-bridge beside it, the installed libshmbus.so,\n"
"        each file a running process maps with shmbus probes in it\n"
"        (another copy of the library, a program linked with\n"
"        libshmbus.a) and each --lib PATH; one attachment per file, so\n"
"        its processes, running and future, are all counted. Pin the\n"
"        maps under DIR (default " SHMBUS_BPF_PIN_DIR "; bpftool map\n"
"        dump pinned DIR/qstats, DIR/names) and leave a background\n"
"        process holding the links. A file that cannot be attached is\n"
"        reported and skipped; exit 1 if it was named by --lib.\n"
"stop:   end that process and remove the pins: everything is detached\n"
"        and freed.\n"
"status: the files attached (device:inode, build id, probes), the\n"
"        programs, the pinned maps and the counters. Needs root.\n"
"\n"
"  --lib PATH    attach to PATH too (repeatable)\n"
"  --pid PID     look for files in PID's maps only, not in every\n"
"                process's (repeatable)\n"
"  --pin-dir DIR where the maps are pinned\n");
}

int cmd_monitor(int argc, char **argv)
{
	static const char *const subs[] = { "start", "stop", "status", NULL };
	static const struct option longopts[] = {
		{ "pin-dir", required_argument, NULL, 'd' },
		{ "lib", required_argument, NULL, 'l' },
		{ "pid", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = SHMBUS_BPF_PIN_DIR, *sub;
	struct start_args a = { .nlibs = 0 };
	int opt;

	if ((opt = subcommand(&argc, &argv, usage, subs, &sub)) >= 0)
		return opt;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd': dir = optarg; break;
		case 'l':
		case 'p':
			if (add_arg(&a, opt, optarg))
				return 2;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (strcmp(sub, "start") && (a.nlibs || a.npids)) {
		fprintf(stderr, "shmbus: monitor: --lib and --pid are for "
			"start\n");
		return 2;
	}
	if (!strcmp(sub, "start")) {
		struct monitor_opts o = { .libs = a.libs, .nlibs = a.nlibs,
					  .pids = a.pids, .npids = a.npids };

		return do_start(dir, &o);
	}
	if (!strcmp(sub, "stop"))
		return do_stop(dir);
	return do_status(dir);	/* subcommand() let no other through */
}
