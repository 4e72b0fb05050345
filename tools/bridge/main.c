// SPDX-License-Identifier: MIT
/*
 * main.c - shmbus-bridge: read the configuration, open the bus, run one
 * thread per route, stop on SIGINT or SIGTERM and print the counters.
 *
 * The signals are blocked in every thread and taken by the main thread
 * with sigwait(), which sets the stop flag the routes look at between
 * steps (their waits are bounded: 100 ms locally, 50 ms on a link).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bridge.h"

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

struct br_link *br_connect(struct br_worker *w, bool first)
{
	unsigned backoff = BR_BACKOFF_MIN_MS;
	unsigned seed = (unsigned)getpid() ^ (unsigned)br_now_ms() ^
			(unsigned)(uintptr_t)w;

	while (!br_stopping()) {
		struct br_link *l = w->broker->open(w->conf, w->route);

		if (l) {
			if (!first)
				atomic_add_relaxed(&w->stats.reconnects, 1);
			return l;
		}
		/* full jitter over the upper half: many bridges that lost
		 * one broker do not come back at the same instant */
		br_sleep_ms(backoff / 2 + (unsigned)rand_r(&seed) %
			    (backoff / 2 + 1));
		if (backoff < BR_BACKOFF_MAX_MS)
			backoff *= 2;
	}
	return NULL;
}

static struct shmbus *open_bus(const struct br_conf *c)
{
	struct shmbus *bus = shmbus__open(c->bus[0] ? c->bus : NULL, NULL);

	if (!bus) {
		fprintf(stderr, "shmbus-bridge: cannot open bus '%s': %s\n",
			c->bus[0] ? c->bus : getenv("SHMBUS_BUS") ?
			getenv("SHMBUS_BUS") : "default", strerror(errno));
		exit(1);
	}
	return bus;
}

static void print_counters(const struct br_conf *c,
			   const struct br_worker *w)
{
	uint64_t tot[5] = { 0 };

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
}

int main(int argc, char **argv)
{
	static struct br_conf conf;	/* large: not on the stack */
	struct br_worker *w;
	pthread_t *tid;
	sigset_t sigs;
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
	}
	if (br_rpc_setup(&conf, w[0].bus))
		return 1;
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
			if (w[i].rc)
				ended = true;
		if (ended)
			break;
	}
	WRITE_ONCE(stop, true);
	for (unsigned i = 0; i < conf.nr_routes; i++) {
		pthread_join(tid[i], NULL);
		rc |= w[i].rc;
	}
	print_counters(&conf, w);
	br_rpc_print();
	for (unsigned i = 0; i < conf.nr_routes; i++)
		shmbus__close(w[i].bus);
	explicit_bzero(conf.pass, sizeof(conf.pass));
	free(w);
	free(tid);
	return rc;
}
