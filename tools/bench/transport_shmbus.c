// SPDX-License-Identifier: MIT
/*
 * transport_shmbus.c - shmbus under test, on the queues "ping" and "pong"
 * of the bench bus: copy publish ("shmbus", "shmbus ack") or loan/commit
 * ("shmbus loan"), and a view receive that reads the message in place;
 * "shmbus crc" is "shmbus" on the checksummed queues "ping.sum" and
 * "pong.sum" (CRC32C at publish, verified at receive).
 * Each child opens a handle of its own on the bus.
 */
#include <errno.h>
#include <stdint.h>

#include "bench.h"

static int prepare_on(const char *const names[], int nchan)
{
	struct shmbus_queue_info qi;

	/* a measurement starts on empty queues */
	for (int c = 0; c < nchan; c++) {
		int err = shmbus__queue_info(bench_bus, names[c], &qi);

		if (err)
			return err;
		if (qi.depth)
			return -ENOTEMPTY;
	}
	return 0;
}

int sb_prepare(const struct run *r, int nchan)
{
	return prepare_on(queue_names, nchan);
}

int sb_sum_prepare(const struct run *r, int nchan)
{
	return prepare_on(sum_queue_names, nchan);
}

int sb_child_init(void)
{
	/* our own handle: the parent's must not cross fork */
	bench_bus = shmbus__open(BUS_NAME, NULL);
	return bench_bus ? 0 : -errno;
}

void sb_child_fini(void)
{
	shmbus__close(bench_bus);
	bench_bus = NULL;
}

/* "shmbus" and "shmbus loan": auto-ack views (at-most-once); "shmbus
 * ack": leases, acked one by one. */
static int sb_open_mode(struct end *e, int chan, bool ack, bool sum)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co,
		    .spin_ns = e->block ? -1 : INT64_MAX,
		    .flags = ack ? 0 : SHMBUS_CONSUMER_AUTO_ACK);
	const char *q = sum ? sum_queue_names[chan] : queue_names[chan];

	if (e->tx)
		e->prod = shmbus_producer__new(bench_bus, q, NULL);
	else
		e->cons = shmbus_consumer__new(bench_bus, q, &co);
	return e->prod || e->cons ? 0 : -errno;
}

int sb_open(struct end *e, int chan)
{
	return sb_open_mode(e, chan, false, false);
}

int sb_open_ack(struct end *e, int chan)
{
	return sb_open_mode(e, chan, true, false);
}

int sb_open_sum(struct end *e, int chan)
{
	return sb_open_mode(e, chan, false, true);
}

void sb_close(struct end *e)
{
	shmbus_producer__free(e->prod);
	shmbus_consumer__free(e->cons);
	e->prod = NULL;
	e->cons = NULL;
}

int sb_send(struct end *e, uint64_t seq)
{
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);

	fill(e->buf, e->size, seq);
	return shmbus_producer__publish(e->prod, e->buf, e->size, &po);
}

int sb_loan_send(struct end *e, uint64_t seq)
{
	SHMBUS_OPTS(shmbus_pub_opts, po, .timeout_ns = -1);
	void *buf = shmbus_producer__loan(e->prod, e->size, -1);
	int err;

	if (!buf)
		return -errno;
	fill(buf, e->size, seq);
	err = shmbus_producer__commit(e->prod, buf, e->size, &po);
	if (err)
		shmbus_producer__cancel(e->prod, buf);
	return err;
}

int sb_recv(struct end *e, uint64_t seq)
{
	struct shmbus_msg m;
	int err;

	err = shmbus_consumer__receive_view(e->cons, &m, -1);
	if (err)
		return err;
	err = m.len == e->size ? verify(m.data, e->size, seq) : -EBADMSG;
	shmbus_consumer__release(e->cons, &m);
	return err;
}
