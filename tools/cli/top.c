// SPDX-License-Identifier: MIT
/*
 * top.c - `shmbus top`: a live view of one bus, redrawn every interval:
 * per queue depth, in-flight, publish/deliver/ack/dead-letter rates (from
 * the arena's counters, no privileges) and p50/p99/p99.9 latencies over
 * the last interval (from the BPF histograms of `shmbus monitor`, when it
 * is started). Plain ANSI (clear, home, alternate screen), so it works in
 * any terminal and in tmux; `q` or Ctrl-C quits. When standard output is
 * not a terminal, or with --batch, frames are printed one after another.
 * Queue names are shown escaped (out.c).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "observe.h"

static volatile sig_atomic_t quit, resized;
static struct termios saved_tio;
static bool tio_saved, screen_on;

static void on_signal(int sig)
{
	if (sig == SIGWINCH) {
		resized = 1;
	} else {
		quit = 1;
		cli_note_signal(sig);	/* the exit status: 128 + sig */
	}
}

static void restore(void)
{
	if (screen_on) {
		/* cursor back, leave the alternate screen */
		fputs("\033[?25h\033[?1049l", stdout);
		fflush(stdout);
		screen_on = false;
	}
	if (tio_saved) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
		tio_saved = false;
	}
}

/* Keys one at a time, no echo; output processing left alone. */
static void interactive_setup(void)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct termios t;

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGWINCH, &sa, NULL);
	if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
		t = saved_tio;
		t.c_lflag &= ~(ICANON | ECHO);
		t.c_cc[VMIN] = 1;
		t.c_cc[VTIME] = 0;
		if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0)
			tio_saved = true;
	}
	atexit(restore);
	fputs("\033[?1049h\033[?25l", stdout);	/* alternate screen, no cursor */
	screen_on = true;
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A unit of a column: values below @below (0: any) are printed divided
 * by @div with @fmt. */
struct unit {
	double below, div;
	const char *fmt;
};

/* A duration in a column of 7: "812ns", "12.3us", "4.56ms", "1.20s". */
static const struct unit ns_units[] = {
	{ 1e3, 1, "%.0fns" }, { 1e6, 1e3, "%.3gus" }, { 1e9, 1e6, "%.3gms" },
	{ 0, 1e9, "%.3gs" },
};

/* A rate per second: "812", "12.3k", "4.6M". */
static const struct unit rate_units[] = {
	{ 1e4, 1, "%.0f" }, { 1e7, 1e3, "%.1fk" }, { 0, 1e6, "%.1fM" },
};

/* @v in the first of @u it is below; "-" when it is NAN. */
static const char *scaled(char *buf, size_t len, double v,
			  const struct unit *u)
{
	if (isnan(v)) {
		snprintf(buf, len, "-");
		return buf;
	}
	while (u->below && v >= u->below)
		u++;
	snprintf(buf, len, u->fmt, v / u->div);
	return buf;
}

static const char *dur(char *buf, size_t len, double ns)
{
	return scaled(buf, len, ns, ns_units);
}

static const char *rate(char *buf, size_t len, double r)
{
	return scaled(buf, len, r, rate_units);
}

/* The quantile @q of latency @k over the interval from @prev to @r. */
static double lat(const struct obs_row *r, const struct obs_row *prev, int k,
		  double q)
{
	struct shmbus_hist d;

	if (!r->has_hist[k])
		return NAN;
	if (!prev || !prev->has_hist[k])
		return hist_quantile(&r->hist[k], q);
	hist_delta(&d, &r->hist[k], &prev->hist[k]);
	return hist_quantile(&d, q);
}

static void frame(FILE *out, const struct obs *o, const struct obs *prev,
		  double dt, bool have_bus, int max_rows, double interval)
{
	char b[10][24];
	time_t now = time(NULL);
	struct tm tm;
	int shown = 0, bus_rows = 0;

	localtime_r(&now, &tm);
	for (int i = 0; i < o->n; i++)
		bus_rows += o->rows[i].arena;
	fprintf(out, "shmbus top - bus %s - %02d:%02d:%02d - every %.1fs - "
		"q quits\n", have_bus && bus_rows ? esc(o->rows[0].bus_name) :
		have_bus ? "(no queues)" : "(unavailable)", tm.tm_hour,
		tm.tm_min, tm.tm_sec, interval);
	if (o->bpf)
		fprintf(out, "latencies: last interval, from the BPF "
			"histograms (PUB->DLV, DLV->ACK, WAKE, journal SYNC)\n");
	else
		fprintf(out, "latencies: off: %s\n", o->bpf_why);
	fprintf(out, "\n%-24s %7s %6s %7s %7s %7s %6s %7s %7s %7s %7s %7s "
		"%7s\n", "QUEUE", "DEPTH", "INFLT", "PUB/s", "DLV/s", "ACK/s",
		"DLQ/s", "p50", "p99", "p99.9", "ACKp99", "WAKEp99", "SYNCp99");
	for (int i = 0; i < o->n; i++) {
		const struct obs_row *r = &o->rows[i], *p;
		const uint64_t *st = r->info.stat;
		double rt[4];

		if (!r->arena)
			continue;
		if (max_rows > 0 && shown == max_rows) {
			fprintf(out, "(%d more)\n", bus_rows - shown);
			break;
		}
		shown++;
		p = prev ? obs_find(prev, r->bus, r->qid) : NULL;
		if (p && (!p->arena || strcmp(p->name, r->name)))
			p = NULL;	/* a new queue under an old id */
		for (int k = 0; k < 4; k++) {
			static const int f[4] = {
				SHMBUS_STAT_PUBLISHED, SHMBUS_STAT_DELIVERED,
				SHMBUS_STAT_ACKED, SHMBUS_STAT_DEADLETTERED,
			};

			rt[k] = p && dt > 0 && st[f[k]] >= p->info.stat[f[k]] ?
				(st[f[k]] - p->info.stat[f[k]]) / dt : NAN;
		}
		fprintf(out, "%-24.24s %7llu %6llu %7s %7s %7s %6s %7s %7s %7s "
			"%7s %7s %7s\n", esc(r->name),
			(unsigned long long)r->info.depth,
			(unsigned long long)r->info.in_flight,
			rate(b[0], 24, rt[0]), rate(b[1], 24, rt[1]),
			rate(b[2], 24, rt[2]), rate(b[3], 24, rt[3]),
			dur(b[4], 24, lat(r, p, SHMBUS_LAT_PUB_DELIVER, .50)),
			dur(b[5], 24, lat(r, p, SHMBUS_LAT_PUB_DELIVER, .99)),
			dur(b[6], 24, lat(r, p, SHMBUS_LAT_PUB_DELIVER, .999)),
			dur(b[7], 24, lat(r, p, SHMBUS_LAT_DELIVER_ACK, .99)),
			dur(b[8], 24, lat(r, p, SHMBUS_LAT_WAKEUP, .99)),
			dur(b[9], 24, lat(r, p, SHMBUS_LAT_JOURNAL_SYNC, .99)));
	}
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: shmbus top [--interval SECONDS] [-n FRAMES] [--batch] [--pin-dir DIR]\n"
"\n"
"A live view of the bus, redrawn every interval (default 1 s): per queue\n"
"depth, in-flight, publish/deliver/ack/dead-letter rates per second, and\n"
"the p50/p99/p99.9 publish->delivery latency, p99 delivery->ack, p99\n"
"wake-up and, for a durable queue, p99 journal sync latency of the last\n"
"interval (those need `shmbus monitor start`, root). q or Ctrl-C quits. --batch (the default when standard output is not\n"
"a terminal) prints frames one after another; -n stops after FRAMES.\n");
}

struct top_args {
	const char *dir;	/* where the BPF maps are pinned */
	bool batch;		/* frames one after another, no screen */
	double interval;	/* seconds from frame to frame */
	long frames;		/* stop after this many; -1: never */
};

/* The options into @a. Returns an exit code when there is nothing more
 * to do, else -1. */
static int top_options(int argc, char **argv, struct top_args *a)
{
	static const struct option longopts[] = {
		{ "interval", required_argument, NULL, 'i' },
		{ "batch", no_argument, NULL, 'b' },
		{ "pin-dir", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "i:n:bh", longopts, NULL)) != -1) {
		char *end;

		switch (opt) {
		case 'i':
			a->interval = strtod(optarg, &end);
			if (*end || !(a->interval >= 0.05 && a->interval <= 3600)) {
				fprintf(stderr, "shmbus: top: --interval: 0.05 "
					"to 3600 seconds\n");
				return 2;
			}
			break;
		case 'n':
			a->frames = strtol(optarg, &end, 10);
			if (*end || a->frames < 1) {
				fprintf(stderr, "shmbus: top: -n: a count\n");
				return 2;
			}
			break;
		case 'b': a->batch = true; break;
		case 'p': a->dir = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	return -1;
}

/* Frame @n: a snapshot of the bus and the maps into @cur, drawn against
 * @prev (NULL: none), taken @dt seconds before. Returns 0, or -errno of
 * the snapshot or of writing the frame. */
static int draw(const struct top_args *a, long n, struct obs *cur,
		const struct obs *prev, double dt)
{
	struct shmbus *bus = cli_open_bus_ro(false);
	struct winsize ws = { 0 };
	int err = obs_snapshot(bus, a->dir, cur);

	if (bus)
		shmbus__close(bus);
	if (err)
		return err;
	if (!a->batch) {
		ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws);
		fputs("\033[H\033[2J", stdout);
	} else if (n) {
		fputc('\n', stdout);
	}
	frame(stdout, cur, prev, dt, bus != NULL,
	      ws.ws_row > 6 ? ws.ws_row - 6 : 0, a->interval);
	/* a reader that went away (EPIPE: SIGPIPE is ignored) ends it */
	errno = 0;
	if (fflush(stdout) || ferror(stdout)) {
		err = errno ? -errno : -EIO;
		obs_free(cur);
		return err;
	}
	return 0;
}

/* Until @deadline (mono_s()), a resize or a signal; with @keys, also
 * until q is pressed. */
static void wait_next(double deadline, bool keys)
{
	while (!quit) {
		double left = deadline - mono_s();
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		char c;

		if (left <= 0 || resized)
			break;
		if (!keys) {
			struct timespec ts = {
				.tv_sec = (time_t)left,
				.tv_nsec = (long)((left - (time_t)left) * 1e9),
			};

			nanosleep(&ts, NULL);
			continue;
		}
		if (poll(&pfd, 1, (int)(left * 1000) + 1) == 1 &&
		    read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q'))
			quit = 1;
	}
	resized = 0;
}

int cmd_top(int argc, char **argv)
{
	struct top_args a = {
		.dir = SHMBUS_BPF_PIN_DIR,
		.batch = !isatty(STDOUT_FILENO),
		.interval = 1.0,
		.frames = -1,
	};
	struct obs cur = { 0 }, prev = { 0 };
	bool have_prev = false;
	double t_prev = 0;
	int err;

	if ((err = top_options(argc, argv, &a)) >= 0)
		return err;
	/* fail early and clearly when there is no bus at all */
	shmbus__close(cli_open_bus_ro(true));
	if (!a.batch)
		interactive_setup();
	for (long n = 0; !quit && (a.frames < 0 || n < a.frames); n++) {
		double t = mono_s();

		err = draw(&a, n, &cur, have_prev ? &prev : NULL, t - t_prev);
		if (err) {
			obs_free(&prev);
			restore();
			if (!ferror(stdout))	/* else cli_close_stdout() */
				fprintf(stderr, "shmbus: top: %s\n",
					strerror(-err));
			return 1;
		}
		obs_free(&prev);
		prev = cur;
		memset(&cur, 0, sizeof(cur));
		have_prev = true;
		t_prev = t;
		if (a.frames >= 0 && n + 1 == a.frames)
			break;
		/* the next frame, a key, or a signal */
		wait_next(t + a.interval, !a.batch && tio_saved);
	}
	obs_free(&prev);
	restore();
	return 0;
}
