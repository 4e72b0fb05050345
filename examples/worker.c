// SPDX-License-Identifier: MIT
/*
 * worker.c - a work-queue worker: receive a job under a lease, work on it,
 * ack it; or, with --fail, nack it every time (a poison message) so that
 * the queue's backoff and max deliveries send it to the dead-letter queue.
 *
 *   worker QUEUE NAME [--work-ms N] [--fail] [--idle-ms N]
 *
 * Prints one line per delivery ("NAME start|done|fail JOB delivery N at
 * T ms") and exits after --idle-ms (default 2000) with nothing to do.
 * Kill it with -9 in the middle of a job: the daemon gives the job to
 * another worker at once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmbus.h"

static double ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	int work_ms = 0, idle_ms = 2000, fail = 0;
	struct shmbus_consumer *c;
	struct shmbus *bus;
	const char *queue, *name;
	double t0 = ms_now();

	if (argc < 3) {
		fprintf(stderr, "usage: worker QUEUE NAME [--work-ms N] "
				"[--fail] [--idle-ms N]\n");
		return 2;
	}
	queue = argv[1];
	name = argv[2];
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--fail"))
			fail = 1;
		else if (!strcmp(argv[i], "--work-ms") && i + 1 < argc)
			work_ms = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--idle-ms") && i + 1 < argc)
			idle_ms = atoi(argv[++i]);
		else {
			fprintf(stderr, "worker: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	bus = shmbus__open(getenv("SHMBUS_BUS"), NULL);
	if (!bus) {
		fprintf(stderr, "worker: open: %s\n", strerror(errno));
		return 1;
	}
	c = shmbus_consumer__new(bus, queue, NULL);
	if (!c) {
		fprintf(stderr, "worker: consumer of %s: %s\n", queue,
			strerror(errno));
		return 1;
	}
	for (;;) {
		struct shmbus_msg m;
		int err = shmbus_consumer__receive_view(c, &m,
						(int64_t)idle_ms * 1000000);

		if (err == -ETIMEDOUT)
			break;
		if (err) {
			fprintf(stderr, "worker %s: receive: %s\n", name,
				strerror(-err));
			return 1;
		}
		printf("%s start %.*s delivery %u at %.0f ms\n", name,
		       (int)m.len, (const char *)m.data, m.delivery_count,
		       ms_now() - t0);
		if (work_ms)
			usleep(work_ms * 1000);
		if (fail) {
			printf("%s fail %.*s delivery %u at %.0f ms\n", name,
			       (int)m.len, (const char *)m.data,
			       m.delivery_count, ms_now() - t0);
			err = shmbus_consumer__nack(c, &m, SHMBUS_NACK_BACKOFF);
		} else {
			printf("%s done %.*s delivery %u at %.0f ms\n", name,
			       (int)m.len, (const char *)m.data,
			       m.delivery_count, ms_now() - t0);
			err = shmbus_consumer__ack(c, &m);
		}
		if (err)
			fprintf(stderr, "worker %s: %s: %s\n", name,
				fail ? "nack" : "ack", strerror(-err));
	}
	shmbus_consumer__free(c);
	shmbus__close(bus);
	return 0;
}
