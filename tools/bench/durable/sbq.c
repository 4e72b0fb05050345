// SPDX-License-Identifier: MIT
/*
 * sbq.c - one shmbus cell: a producer process and a consumer process on a
 * fresh queue of the bench bus, durable with one sync policy or in memory
 * (the baseline). The producer publishes batches of 1, 16 or 256 messages
 * with SHMBUS_PRODUCER_ASYNC_CONFIRM and waits for each batch's confirm
 * (shmbus_producer__confirm_wait(), which an in-memory queue answers at
 * once); a batch's latency runs from its first publish to its confirm.
 * The consumer takes every message under a lease, checks it and acks it,
 * so that the daemon settles what it journaled while the producer runs.
 * The queue is deleted afterwards, and its journal with it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "dbench.h"
#include "barrier.h"

#define CONFIRM_TIMEOUT_NS	(60ll * 1000000000ll)
#define RECV_POLL_NS		(100ll * 1000000ll)
#define DRAIN_IDLE_NS		(3000ll * 1000000ll)

struct shmbus *d_bus;			/* the parent's handle */

static const uint32_t kind_sync[D_NR_KIND] = {
	[D_ALWAYS] = SHMBUS_SYNC_ALWAYS,
	[D_BATCH] = SHMBUS_SYNC_BATCH,
	[D_NEVER] = SHMBUS_SYNC_NEVER,
};

static void queue_name(char *buf, size_t len, enum d_kind k, unsigned bi,
		       int si)
{
	snprintf(buf, len, "%s.%u.%zu", d_kind_names[k], d_batches[bi],
		 sizes[si]);
}

static void declare(const char *q, enum d_kind k)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = dcfg.max_len,
		    .msg_size = MAX_MSG);
	int err;

	if (k != D_MEMORY) {
		qo.flags = SHMBUS_QUEUE_DURABLE;
		qo.sync = kind_sync[k];
	}
	err = shmbus__queue_declare(d_bus, q, &qo);
	if (err != 1)
		die("declaring queue '%s': %s %s", q,
		    err < 0 ? strerror(-err) : "it exists",
		    err < 0 ? shmbus_errmsg() : "");
}

/* Role 0 (producer @pi of dcfg.producers): batches until the measured
 * time is over; the last one counts whole, and the clock stops at its
 * confirm. Its seqs are pi << D_PROD_SHIFT onwards. */
static void produce(const char *q, unsigned batch, size_t size, unsigned pi)
{
	SHMBUS_OPTS(shmbus_producer_opts, o,
		    .flags = SHMBUS_PRODUCER_ASYNC_CONFIRM);
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	uint64_t first = (uint64_t)pi << D_PROD_SHIFT;
	uint64_t warm_end, end, t0 = 0, base = first, seq = first, t = 0;
	struct shmbus_producer *p;
	struct shmbus *bus;
	void *buf = aligned_alloc(CACHELINE, MAX_MSG);
	bool measuring = false;
	int err;

	bus = d_bus_open(D_BUS, false);
	p = shmbus_producer__new(bus, q, &o);
	if (!p || !buf)
		die("%s: producer: %s", q, strerror(errno));
	d_start_line();
	warm_end = now_ns() + (uint64_t)(dcfg.warm_s * 1e9);
	end = warm_end + (uint64_t)(dcfg.seconds * 1e9);
	for (;;) {
		uint64_t tb = now_ns();

		if (!measuring && tb >= warm_end) {
			measuring = true;
			t0 = tb;
			base = seq;
		}
		if (measuring && tb >= end)
			break;
		for (unsigned i = 0; i < batch; i++, seq++) {
			fill(buf, size, seq);
			err = shmbus_producer__publish(p, buf, size, &po);
			if (err)
				die("%s: publish %llu: %s", q,
				    (unsigned long long)seq, strerror(-err));
		}
		err = shmbus_producer__confirm_wait(p, CONFIRM_TIMEOUT_NS);
		if (err)
			die("%s: confirm_wait after %llu: %s", q,
			    (unsigned long long)seq, strerror(-err));
		t = now_ns();
		if (measuring)
			d_lat(t - tb);
	}
	d_producer_done(seq - base, seq - first, t - t0);
	shmbus_producer__free(p);
	shmbus__close(bus);
	free(buf);
}

static uint64_t first_word(const struct shmbus_msg *m)
{
	uint64_t v = 0;

	if (m->len >= sizeof(v))
		memcpy(&v, m->data, sizeof(v));
	return v;
}

/* Mark @seq seen in the growing bitmap *@bits; false if it was. */
static bool mark(uint8_t **bits, size_t *len, uint64_t seq)
{
	size_t byte = seq / 8;
	bool was;

	if (byte >= *len) {
		size_t n = (byte + 1) * 2;
		uint8_t *p = realloc(*bits, n);

		if (!p)
			die("out of memory");
		memset(p + *len, 0, n - *len);
		*bits = p;
		*len = n;
	}
	was = (*bits)[byte] & (1u << (seq % 8));
	(*bits)[byte] |= (uint8_t)(1u << (seq % 8));
	return !was;
}

/*
 * Role 1: receive, check and ack everything the producer published. A
 * message must be whole; one that comes twice, or after a later one, is
 * counted (and the cell reported as failed) rather than fatal, so that
 * the run shows how often it happens. The consumer stops once the
 * producer is done and every message came, or nothing came for
 * DRAIN_IDLE_NS after it was done (the rest is lost).
 */
static void consume(const char *q, size_t size)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
	struct shmbus_consumer *c;
	struct shmbus *bus;
	uint64_t seen = 0, next[D_MAX_PROD] = { 0 }, t0, idle = 0;
	uint8_t *bits[D_MAX_PROD] = { NULL };
	size_t nbits[D_MAX_PROD] = { 0 };

	bus = d_bus_open(D_BUS, false);
	c = shmbus_consumer__new(bus, q, &co);
	if (!c)
		die("%s: consumer: %s", q, strerror(errno));
	d_start_line();
	t0 = now_ns();
	while (smp_load_acquire(&dsh->done) < dcfg.producers ||
	       seen < dsh->total) {
		struct shmbus_msg m;
		uint64_t seq, n;
		unsigned pi;
		int err = shmbus_consumer__receive_view(c, &m, RECV_POLL_NS);

		if (err == -ETIMEDOUT) {
			if (smp_load_acquire(&dsh->done) >= dcfg.producers &&
			    (idle += RECV_POLL_NS) >= DRAIN_IDLE_NS)
				break;
			continue;
		}
		if (err)
			die("%s: receive %llu: %s", q,
			    (unsigned long long)seen, strerror(-err));
		idle = 0;
		seq = first_word(&m);
		if (m.len != size || verify(m.data, size, seq))
			die("%s: message %llu is not one that was sent (%u "
			    "bytes, delivery %u)", q, (unsigned long long)seq,
			    m.len, m.delivery_count);
		pi = (unsigned)(seq >> D_PROD_SHIFT);
		n = seq & ((1ull << D_PROD_SHIFT) - 1);
		if (pi >= D_MAX_PROD)
			die("%s: message %llu of no producer", q,
			    (unsigned long long)seq);
		if (!mark(&bits[pi], &nbits[pi], n))
			dsh->dups++;
		else
			seen++;
		/* one producer's messages in its order */
		if (n < next[pi])
			dsh->disorder++;	/* a later one came first */
		else
			next[pi] = n + 1;
		err = shmbus_consumer__ack(c, &m);
		if (err)
			die("%s: ack %llu: %s", q, (unsigned long long)seq,
			    strerror(-err));
	}
	dsh->drain_ns = now_ns() - t0;
	dsh->received = seen;
	shmbus_consumer__free(c);
	shmbus__close(bus);
	for (unsigned i = 0; i < D_MAX_PROD; i++)
		free(bits[i]);
}

/* Messages per fdatasync of the queue's journal, as the daemon counted
 * them; 0 for an in-memory queue. */
static double per_sync(const char *q)
{
	SHMBUS_OPTS(shmbus_journal_info, ji);

	if (shmbus__queue_journal(d_bus, q, &ji) || !ji.syncs)
		return 0;
	return (double)ji.written / (double)ji.syncs;
}

void d_run_shmbus(enum d_kind k, unsigned bi, int si)
{
	struct dcell *c = &dcells[k][bi][si];
	pid_t kids[D_MAX_PROD + 1];
	unsigned np = dcfg.producers;
	char q[64];
	int err;

	queue_name(q, sizeof(q), k, bi, si);
	declare(q, k);
	memset(dsh, 0, offsetof(struct dshared, lat));
	for (unsigned i = 0; i < np; i++) {
		kids[i] = d_fork(q);
		if (!kids[i]) {
			produce(q, d_batches[bi], sizes[si], i);
			_exit(0);
		}
	}
	kids[np] = d_fork(q);
	if (!kids[np]) {
		consume(q, sizes[si]);
		_exit(0);
	}
	d_wait_kids(kids, (int)np + 1, q);
	d_cell_from_shared(c);
	/* never syncs for confirms: what few syncs a queue's end or a
	 * housekeeping pass makes say nothing of it */
	c->per_sync = k == D_NEVER ? 0 : per_sync(q);
	err = shmbus__queue_delete(d_bus, q);
	if (err)
		die("deleting queue '%s': %s", q, strerror(-err));
	fprintf(stderr, "  %-18s %9.0f msg/s  confirm p50 %9.1f us  p99 "
		"%9.1f us  %6.1f records/sync\n", q, c->rate, c->p50_us,
		c->p99_us, c->per_sync);
}
