// SPDX-License-Identifier: MIT
/*
 * reqrep.c - request-reply: round trips of shmbus__request() on queue
 * bench.rr, from the parent, against a replier process pinned to CPU 1
 * that busy-polls and answers each request, alternating with plain
 * ping-pongs through the same replier. The parent checks every reply and
 * times every trip into the shared samples.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define RR_BLOCK	500	/* round trips of one kind in a row */

/*
 * The replier process: answer each request on bench.rr as
 * shmbus_consumer__serve() does (a reply with the request's bytes), echo
 * each plain message to bench.rr.pong, @count messages in all, then exit.
 */
static __attribute__((noreturn))
void rr_replier(uint64_t count)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = INT64_MAX,
		    .flags = SHMBUS_CONSUMER_AUTO_ACK);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;

	pin_cpu(1);
	if (sb_child_init())
		_exit(3);
	c = shmbus_consumer__new(bench_bus, "bench.rr", &co);
	p = shmbus_producer__new(bench_bus, "bench.rr.pong", NULL);
	if (!c || !p)
		_exit(4);
	for (uint64_t i = 0; i < count; i++) {
		struct shmbus_msg m;
		int err = shmbus_consumer__receive_view(c, &m, -1);

		if (err)
			_exit(5);
		err = m.reply_to ? shmbus_consumer__reply(c, &m, m.data, m.len)
				 : shmbus_producer__publish(p, m.data, m.len,
							    NULL);
		shmbus_consumer__release(c, &m);
		if (err)
			_exit(6);
	}
	shmbus_producer__free(p);
	shmbus_consumer__free(c);
	sb_child_fini();
	_exit(0);
}

/* One ping-pong through the replier: publish to bench.rr, receive the
 * echo from bench.rr.pong. */
static int rr_ping(struct shmbus_producer *p, struct shmbus_consumer *c,
		   const unsigned char *buf, unsigned char *rep, size_t len)
{
	struct shmbus_msg m;
	int err = shmbus_producer__publish(p, buf, len, NULL);

	if (!err)
		err = shmbus_consumer__receive_view(c, &m, 5000000000LL);
	if (err)
		return err;
	memcpy(rep, m.data, m.len < len ? m.len : len);
	err = m.len == len ? 0 : -EBADMSG;
	shmbus_consumer__release(c, &m);
	return err;
}

/*
 * Round trips of shmbus__request() against a replier process, in blocks
 * of RR_BLOCK alternating with blocks of plain ping-pongs through the
 * same replier (publish, receive the echo): both kinds meet the same
 * vCPU placement, which on a VM moves within a run, so their ratio is
 * one of like with like. Request times go to *@req, ping-pong times to
 * *@pp; *@mean_us is the requests' mean.
 */
void run_reqrep(uint64_t n, struct rtt_stat *req, struct rtt_stat *pp,
		double *mean_us)
{
	SHMBUS_OPTS(shmbus_queue_opts, q, .max_len = 1024);
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = INT64_MAX,
		    .flags = SHMBUS_CONSUMER_AUTO_ACK);
	unsigned char buf[64], rep[64];
	struct shmbus_queue_info qi;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	uint64_t warm, total = 0, nr = 0, np = 0;
	pid_t kid;
	int err;

	n = n / RR_BLOCK * RR_BLOCK;
	if (n > sh_max_samples / 2)
		n = sh_max_samples / 2 / RR_BLOCK * RR_BLOCK;
	if (n < RR_BLOCK)
		n = RR_BLOCK;
	warm = RR_BLOCK;		/* one block of each, not counted */
	err = shmbus__queue_declare(bench_bus, "bench.rr", &q);
	if (err >= 0)
		err = shmbus__queue_declare(bench_bus, "bench.rr.pong", &q);
	if (err < 0)
		die("declaring bench.rr: %s", strerror(-err));
	kid = fork();
	if (kid < 0)
		die("fork: %s", strerror(errno));
	if (!kid)
		rr_replier(2 * (n + warm));
	p = shmbus_producer__new(bench_bus, "bench.rr", NULL);
	c = shmbus_consumer__new(bench_bus, "bench.rr.pong", &co);
	if (!p || !c)
		die("attaching to bench.rr: %s", strerror(errno));
	do {
		usleep(1000);
		err = shmbus__queue_info(bench_bus, "bench.rr", &qi);
	} while (!err && !qi.consumers);
	for (uint64_t i = 0; i < 2 * (n + warm); i++) {
		bool request = (i / RR_BLOCK) % 2 == 0;
		bool counted = i >= 2 * warm;
		uint64_t t0, dt;
		ssize_t len;

		fill(buf, sizeof(buf), i);
		t0 = now_ns();
		if (request)
			len = shmbus__request(bench_bus, "bench.rr", buf,
					      sizeof(buf), rep, sizeof(rep),
					      5000000000LL);
		else
			len = rr_ping(p, c, buf, rep, sizeof(rep)) ?:
			      (ssize_t)sizeof(rep);
		dt = now_ns() - t0;
		if (len != (ssize_t)sizeof(rep) || verify(rep, sizeof(rep), i))
			die("%s %llu: %s", request ? "request" : "ping",
			    (unsigned long long)i,
			    len < 0 ? strerror((int)-len) : "wrong reply");
		if (!counted)
			continue;
		if (request) {
			sh->samples[nr++] = dt;
			total += dt;
		} else {
			sh->samples[n + np++] = dt;
		}
	}
	sh->nsamples = nr;
	*req = rtt_from_samples();
	*mean_us = total / 1e3 / nr;
	memmove(sh->samples, sh->samples + n, np * sizeof(sh->samples[0]));
	sh->nsamples = np;
	*pp = rtt_from_samples();
	{
		int status;

		if (waitpid(kid, &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status))
			die("replier failed (status %#x)", status);
	}
	shmbus_producer__free(p);
	shmbus_consumer__free(c);
	shmbus__queue_delete(bench_bus, "bench.rr");
	shmbus__queue_delete(bench_bus, "bench.rr.pong");
}
