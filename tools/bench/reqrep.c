// SPDX-License-Identifier: MIT
/*
 * reqrep.c - request-reply: round trips of shmbus__request() on queue
 * bench.rr, from the parent, against a replier process pinned to CPU 1
 * that busy-polls and echoes each request. The parent checks every reply
 * and times every trip into the shared samples.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

static ssize_t echo_handler(void *ctx, const struct shmbus_msg *req,
			    void *reply, size_t cap)
{
	(void)ctx;
	memcpy(reply, req->data, req->len < cap ? req->len : cap);
	return req->len;
}

/* The replier process: echo @count requests, then exit. */
static __attribute__((noreturn))
void rr_replier(uint64_t count)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = INT64_MAX);
	struct shmbus_consumer *c;

	pin_cpu(1);
	if (sb_child_init())
		_exit(3);
	c = shmbus_consumer__new(bench_bus, "bench.rr", &co);
	if (!c)
		_exit(4);
	if (shmbus_consumer__serve(c, echo_handler, NULL, (unsigned)count,
				   -1) < 0)
		_exit(5);
	shmbus_consumer__free(c);
	sb_child_fini();
	_exit(0);
}

/* Round trips of shmbus__request() against a replier process. */
void run_reqrep(uint64_t n, struct rtt_stat *st, double *mean_us)
{
	SHMBUS_OPTS(shmbus_queue_opts, q, .max_len = 1024);
	unsigned char buf[64], rep[64];
	struct shmbus_queue_info qi;
	uint64_t warm = n / 10, total = 0;
	pid_t kid;
	int err;

	if (n > sh_max_samples)
		n = sh_max_samples;
	err = shmbus__queue_declare(bench_bus, "bench.rr", &q);
	if (err < 0)
		die("declaring bench.rr: %s", strerror(-err));
	kid = fork();
	if (kid < 0)
		die("fork: %s", strerror(errno));
	if (!kid)
		rr_replier(n + warm);
	do {
		usleep(1000);
		err = shmbus__queue_info(bench_bus, "bench.rr", &qi);
	} while (!err && !qi.consumers);
	for (uint64_t i = 0; i < n + warm; i++) {
		uint64_t t0 = now_ns(), dt;
		ssize_t len;

		fill(buf, sizeof(buf), i);
		len = shmbus__request(bench_bus, "bench.rr", buf, sizeof(buf),
				      rep, sizeof(rep), 5000000000LL);
		dt = now_ns() - t0;
		if (len != (ssize_t)sizeof(rep) || verify(rep, sizeof(rep), i))
			die("request %llu: %s", (unsigned long long)i,
			    len < 0 ? strerror((int)-len) : "wrong reply");
		if (i >= warm) {
			sh->samples[i - warm] = dt;
			total += dt;
		}
	}
	sh->nsamples = n;
	*st = rtt_from_samples();
	*mean_us = total / 1e3 / n;
	{
		int status;

		if (waitpid(kid, &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			die("replier failed (status %#x)", status);
	}
	shmbus__queue_delete(bench_bus, "bench.rr");
}
