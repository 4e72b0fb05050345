// SPDX-License-Identifier: MIT
/*
 * monitor.c - `shmbus monitor start|stop|status`: the command around the
 * BPF loader (bpf/monitor.h): its options, usage, messages and exit
 * codes. start loads the programs of bpf/shmbus.bpf.c, attaches them to
 * the USDT probes of the libshmbus.so this program runs with, pins the
 * maps under /sys/fs/bpf/shmbus/ and leaves a background process holding
 * the links; stop ends that process and removes the pins; status prints
 * the pinned counters.
 */
#include <errno.h>
#include <getopt.h>
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

static int do_start(const char *dir)
{
	char msg[MONITOR_MSG_MAX];
	struct monitor *m;
	int werr = 0;

	if (monitor_start(dir, &m, msg, sizeof(msg)))
		return fail(msg);
	printf("monitoring %s; counters in %s "
	       "(bpftool map dump pinned %s)\n", m->lib, m->qstats, m->qstats);
	if (m->bridge[0])
		printf("and %s; its routes in %s/bridge\n", m->bridge, dir);
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
	_exit(werr ? 1 : 0);
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
	struct shmbus_qkey key;
	int err = monitor_counters_open(&it, dir);

	if (err) {
		printf("not started (%s: %s)\n", it.path, strerror(-err));
		return 3;
	}
	printf("started: %s\n", it.path);
	printf("%10s %5s %10s %10s %10s %8s %8s %8s %8s %8s %8s\n", "BUS", "QID",
	       "PUBLISHED", "DELIVERED", "ACKED", "NACKED", "REDELIV",
	       "DEADLTR", "EXPIRED", "DROPPED", "WAKEUPS");
	while (monitor_counters_next(&it, &key, &v))
		printf("%10u %5u %10llu %10llu %10llu %8llu %8llu %8llu %8llu "
		       "%8llu %8llu\n", key.bus, key.qid, v.published, v.delivered, v.acked,
		       v.nacked, v.redelivered, v.dead_lettered, v.expired,
		       v.dropped, v.wakeups);
	monitor_counters_close(&it);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmbus monitor start|stop|status [--pin-dir DIR]\n"
"\n"
"start:  load the BPF programs, attach them to the USDT probes of\n"
"        libshmbus.so in every process (running and future), pin the\n"
"        counter and histogram maps under DIR (default\n"
"        " SHMBUS_BPF_PIN_DIR "; bpftool map dump pinned DIR/qstats)\n"
"        and leave a background process holding the links.\n"
"        The daemon links the same library: it is covered too.\n"
"stop:   end that process and remove the pins: everything is detached\n"
"        and freed.\n"
"status: the counters. Needs root.\n");
}

int cmd_monitor(int argc, char **argv)
{
	static const char *const subs[] = { "start", "stop", "status", NULL };
	static const struct option longopts[] = {
		{ "pin-dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = SHMBUS_BPF_PIN_DIR, *sub;
	int opt;

	if ((opt = subcommand(&argc, &argv, usage, subs, &sub)) >= 0)
		return opt;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd': dir = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!strcmp(sub, "start"))
		return do_start(dir);
	if (!strcmp(sub, "stop"))
		return do_stop(dir);
	return do_status(dir);	/* subcommand() let no other through */
}
