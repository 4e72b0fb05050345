// SPDX-License-Identifier: MIT
/*
 * main.c - shmbus-bridge: read the configuration, open the bus, run one
 * thread per route, stop on SIGINT or SIGTERM and print the counters.
 *
 * The signals are blocked in every thread and taken by the main thread
 * with sigwait(), which sets the stop flag the routes look at between
 * steps (their waits are bounded: 100 ms locally, 50 ms on a link).
 * Meanwhile it writes the routes' counters, once a second, into the
 * stats file `shmbus stat` and `shmbus metrics` read (statfile.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge.h"
#include "statfile.h"

static bool stop;	/* set once, by the main thread */

bool br_stopping(void)
{
	return READ_ONCE(stop);
}

int64_t br_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t br_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void br_sleep_ms(unsigned ms)
{
	int64_t end = br_now_ms() + ms;

	while (!br_stopping()) {
		int64_t left = end - br_now_ms();
		struct timespec ts = { 0, 50 * 1000000L };

		if (left <= 0)
			break;
		if (left < 50)
			ts.tv_nsec = left * 1000000L;
		nanosleep(&ts, NULL);
	}
}

void br_log(const struct br_worker *w, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* one write per line: the routes' lines do not interleave */
	fprintf(stderr, "shmbus-bridge: %s: %s\n", w->route->name, buf);
}

/* Full jitter over the upper half of @backoff: many bridges that lost one
 * broker do not come back at the same instant. */
static unsigned jitter(unsigned backoff, unsigned *seed)
{
	return backoff / 2 + (unsigned)rand_r(seed) % (backoff / 2 + 1);
}

struct br_link *br_connect(struct br_worker *w, bool first)
{
	unsigned backoff = BR_BACKOFF_MIN_MS;
	unsigned seed = (unsigned)getpid() ^ (unsigned)br_now_ms() ^
			(unsigned)(uintptr_t)w;

	/* a link that settled nothing (a channel closed at the first
	 * publish, again and again) is not retried at once: the backoff
	 * goes on from where the last one stopped */
	if (!first && !w->progress) {
		unsigned n = w->futile < 7 ? w->futile : 7;

		backoff = BR_BACKOFF_MIN_MS << n;
		if (backoff > BR_BACKOFF_MAX_MS)
			backoff = BR_BACKOFF_MAX_MS;
		if (w->futile++)
			br_sleep_ms(jitter(backoff, &seed));
	} else {
		w->futile = 0;
	}
	w->progress = false;
	while (!br_stopping()) {
		struct br_link *l = w->broker->open(w->conf, w->route);

		if (l) {
			if (!first)
				atomic_add_relaxed(&w->stats.reconnects, 1);
			return l;
		}
		br_sleep_ms(jitter(backoff, &seed));
		if (backoff < BR_BACKOFF_MAX_MS)
			backoff *= 2;
	}
	return NULL;
}

/* The bus, or NULL and errno; the daemon is started if it is not
 * running unless start-daemon = false. */
static struct shmbus *try_open_bus(const struct br_conf *c)
{
	struct shmbus_open_opts o = {
		.sz = sizeof(o),
		.flags = c->no_start ? SHMBUS_OPEN_NOSTART : 0,
	};

	return shmbus__open(c->bus[0] ? c->bus : NULL, &o);
}

static struct shmbus *open_bus(const struct br_conf *c)
{
	struct shmbus *bus = try_open_bus(c);

	if (!bus) {
		fprintf(stderr, "shmbus-bridge: cannot open bus '%s': %s\n",
			c->bus[0] ? c->bus : getenv("SHMBUS_BUS") ?
			getenv("SHMBUS_BUS") : "default", strerror(errno));
		exit(1);
	}
	return bus;
}

/* ---- the stats file (statfile.h) ----------------------------------- */

struct statfile {
	char path[PATH_MAX + 128], tmp[PATH_MAX + 160];
	unsigned long long start;
	struct shmbus *bus;	/* the main thread's, for the out routes' lag */
	bool off;		/* could not write: said once, given up */
};

static void statfile_init(struct statfile *sf, const struct br_conf *c)
{
	char dir[PATH_MAX];

	sf->bus = try_open_bus(c);
	sf->start = br_pid_start((long)getpid());
	if (!sf->bus || br_statfile_dir(NULL, dir, sizeof(dir)) < 0) {
		sf->off = true;
		return;
	}
	snprintf(sf->path, sizeof(sf->path), "%s/bridge.%s.%d.stat", dir,
		 shmbus__name(sf->bus), (int)getpid());
	snprintf(sf->tmp, sizeof(sf->tmp), "%s.tmp", sf->path);
}

/* An out route's lag: what waits in its local queue or subscription. */
static void out_lag(struct statfile *sf, struct br_worker *w)
{
	const struct br_route *r = w->route;
	struct shmbus_queue_info qi;
	char name[2 * BR_LOCAL_MAX];

	if (r->from_queue[0])
		snprintf(name, sizeof(name), "%s", r->from_queue);
	else
		snprintf(name, sizeof(name), "%s#%s", r->from_topic, r->group);
	if (shmbus__queue_info(sf->bus, name, &qi) == 0)
		WRITE_ONCE(w->stats.lag, qi.depth);
}

/* Write the counters to a new file and rename it over the old one: a
 * reader sees one whole snapshot or the one before. */
static void statfile_write(struct statfile *sf, const struct br_conf *c,
			   struct br_worker *w)
{
	struct timespec now;
	FILE *f;
	int fd;

	if (sf->off)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	fd = open(sf->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
		  O_NOFOLLOW, 0600);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		goto fail;
	}
	fprintf(f, "shmbus-bridge %d\npid %d start %llu time %lld\nbus %s\n",
		BR_STATFILE_VERSION, (int)getpid(), sf->start,
		(long long)now.tv_sec * 1000 + now.tv_nsec / 1000000,
		shmbus__name(sf->bus));
	for (unsigned i = 0; i < c->nr_routes; i++) {
		const struct br_stats *s = &w[i].stats;

		if (w[i].route->dir == BR_OUT)
			out_lag(sf, &w[i]);
		fprintf(f, "route %s %llu %llu %llu %llu %llu %llu %llu %lld "
			"%llu %llu %llu %s\n",
			w[i].route->dir == BR_OUT ? "out" : "in",
			(unsigned long long)READ_ONCE(s->blocked),
			(unsigned long long)READ_ONCE(s->forwarded),
			(unsigned long long)READ_ONCE(s->confirmed),
			(unsigned long long)READ_ONCE(s->nacked),
			(unsigned long long)READ_ONCE(s->redelivered),
			(unsigned long long)READ_ONCE(s->reconnects),
			(unsigned long long)READ_ONCE(s->inflight),
			(long long)READ_ONCE(s->lag),
			(unsigned long long)READ_ONCE(s->blocks),
			(unsigned long long)READ_ONCE(s->extended),
			(unsigned long long)READ_ONCE(s->rejected),
			w[i].route->name);
	}
	if (fclose(f) || rename(sf->tmp, sf->path))
		goto fail;
	return;
fail:
	fprintf(stderr, "shmbus-bridge: cannot write the stats file %s: %s "
		"(shmbus stat will not show this bridge)\n", sf->path,
		strerror(errno));
	unlink(sf->tmp);
	sf->off = true;
}

static void statfile_end(struct statfile *sf)
{
	if (!sf->off)
		unlink(sf->path);
	if (sf->bus)
		shmbus__close(sf->bus);
}

static void print_counters(const struct br_conf *c,
			   const struct br_worker *w)
{
	uint64_t tot[5] = { 0 }, rejected = 0;
	bool verifies = false;

	for (unsigned i = 0; i < c->nr_routes; i++) {
		const struct br_stats *s = &w[i].stats;
		uint64_t v[5] = { s->forwarded, s->confirmed, s->nacked,
				  s->redelivered, s->reconnects };

		if (c->nr_routes > 1)
			fprintf(stderr, "bridge: route %s (%s): forwarded %llu "
				"confirmed %llu nacked %llu redelivered %llu "
				"reconnects %llu\n", w[i].route->name,
				w[i].route->dir == BR_OUT ? "out" : "in",
				(unsigned long long)v[0],
				(unsigned long long)v[1],
				(unsigned long long)v[2],
				(unsigned long long)v[3],
				(unsigned long long)v[4]);
		for (int k = 0; k < 5; k++)
			tot[k] += v[k];
	}
	fprintf(stderr, "bridge: forwarded %llu confirmed %llu nacked %llu "
		"reconnects %llu\n", (unsigned long long)tot[0],
		(unsigned long long)tot[1], (unsigned long long)tot[2],
		(unsigned long long)tot[4]);
	for (unsigned i = 0; i < c->nr_routes; i++) {
		/* with an in route that verifies: what failed to */
		verifies |= w[i].route->dir == BR_IN && w[i].route->sign.len;
		rejected += w[i].stats.rejected;
	}
	if (verifies)
		fprintf(stderr, "bridge: signature rejected %llu\n",
			(unsigned long long)rejected);
}

/* In routes: a body larger than the bus's largest chunk can never go in,
 * and is not worth reading into memory, a window of them at a time. */
static void set_max_body(struct br_conf *c, struct shmbus *bus)
{
	struct shmbus_pool_info pi;
	int n = shmbus__pool_count(bus);

	if (n < 1 || shmbus__pool_info(bus, (unsigned)n - 1, &pi))
		return;
	for (unsigned i = 0; i < c->nr_routes; i++)
		if (c->routes[i].dir == BR_IN)
			c->routes[i].max_body = pi.payload;
}

int main(int argc, char **argv)
{
	static struct br_conf conf;	/* large: not on the stack */
	struct statfile sf = { 0 };
	struct br_worker *w;
	pthread_t *tid;
	sigset_t sigs;
	int64_t next_stats;
	int rc = 0, sig;

	br_conf_parse(&conf, argc, argv);
	br_rpc_conf(&conf);
	/* before any thread: they all inherit the mask */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);	/* a broken socket is an error */

	w = calloc(conf.nr_routes, sizeof(*w));
	tid = calloc(conf.nr_routes, sizeof(*tid));
	if (!w || !tid) {
		fputs("shmbus-bridge: out of memory\n", stderr);
		return 1;
	}
	for (unsigned i = 0; i < conf.nr_routes; i++) {
		w[i].conf = &conf;
		w[i].route = &conf.routes[i];
		w[i].broker = br_broker_for(conf.url);
		/* a bus handle per route: the library serialises nothing
		 * between routes that way */
		w[i].bus = open_bus(&conf);
		/* unknown until a route has looked */
		w[i].stats.lag = (uint64_t)-1;
	}
	if (br_rpc_setup(&conf, w[0].bus))
		return 1;
	set_max_body(&conf, w[0].bus);
	statfile_init(&sf, &conf);
	statfile_write(&sf, &conf, w);
	next_stats = br_now_ms() + BR_STATS_MS;
	for (unsigned i = 0; i < conf.nr_routes; i++) {
		int err = pthread_create(&tid[i], NULL,
					 conf.routes[i].dir == BR_OUT ?
					 br_out_run : br_in_run, &w[i]);

		if (err) {
			fprintf(stderr, "shmbus-bridge: cannot start a "
				"thread: %s\n", strerror(err));
			exit(1);
		}
	}
	/* a route that ends by itself (its local queue deleted) ends the
	 * bridge: a supervisor restarts it whole */
	for (;;) {
		struct timespec tick = { 0, 200 * 1000000L };
		bool ended = false;

		sig = sigtimedwait(&sigs, NULL, &tick);
		if (sig > 0)
			break;
		for (unsigned i = 0; i < conf.nr_routes; i++)
			if (READ_ONCE(w[i].rc))
				ended = true;
		if (ended)
			break;
		if (br_now_ms() >= next_stats) {
			statfile_write(&sf, &conf, w);
			next_stats = br_now_ms() + BR_STATS_MS;
		}
	}
	WRITE_ONCE(stop, true);
	for (unsigned i = 0; i < conf.nr_routes; i++) {
		pthread_join(tid[i], NULL);
		rc |= w[i].rc;
	}
	print_counters(&conf, w);
	br_rpc_print();
	statfile_end(&sf);
	for (unsigned i = 0; i < conf.nr_routes; i++)
		shmbus__close(w[i].bus);
	explicit_bzero(conf.pass, sizeof(conf.pass));
	free(w);
	free(tid);
	return rc;
}
