// SPDX-License-Identifier: MIT
/*
 * rabbit.c - RabbitMQ on the same machine, as the reference for durable
 * queues: a private rabbitmq-server (../rabbit/rabbit.c) with its files
 * under dcfg.dir, the disk the shmbus journals use. Each cell: a producer
 * publishes persistent messages (delivery_mode 2) to a durable queue on a
 * channel in confirm mode, in batches of 1, 16 or 256, and waits for the
 * basic.ack of the whole batch; a consumer (prefetch 256) acks each
 * message. The same payloads, checked the same way, as the shmbus cells.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <amqp.h>

#include "dbench.h"
#include "barrier.h"
#include "../rabbit/rabbit.h"

#define RMQ_PREFETCH	256

/*
 * Wait until every delivery tag in (@base, @base + @n] is confirmed. A
 * basic.ack confirms its tag, or with multiple every tag up to it; the
 * broker may combine them as it likes, so each tag of the batch is
 * marked (n <= 256).
 */
static void wait_confirms(amqp_connection_state_t c, uint64_t base,
			  unsigned n)
{
	uint8_t seen[256] = { 0 };
	unsigned left = n;

	while (left) {
		amqp_frame_t f;
		amqp_basic_ack_t *a;
		int err = amqp_simple_wait_frame(c, &f);

		if (err != AMQP_STATUS_OK)
			die("AMQP: waiting for confirms: %s",
			    amqp_error_string2(err));
		if (f.frame_type != AMQP_FRAME_METHOD)
			continue;
		if (f.payload.method.id == AMQP_BASIC_NACK_METHOD)
			die("AMQP: the broker nacked a publish");
		if (f.payload.method.id != AMQP_BASIC_ACK_METHOD)
			continue;
		a = f.payload.method.decoded;
		for (uint64_t t = a->multiple ? base + 1 : a->delivery_tag;
		     t <= a->delivery_tag; t++) {
			if (t <= base || t > base + n || seen[t - base - 1])
				continue;
			seen[t - base - 1] = 1;
			left--;
		}
	}
}

static void r_produce(const char *q, unsigned batch, size_t size,
		      unsigned pi)
{
	amqp_connection_state_t c = rabbit_connect(false);
	amqp_basic_properties_t props = {
		._flags = AMQP_BASIC_DELIVERY_MODE_FLAG,
		.delivery_mode = 2,	/* persistent */
	};
	uint64_t first0 = (uint64_t)pi << D_PROD_SHIFT;
	uint64_t warm_end, end, t0 = 0, base = first0, seq = first0, t = 0;
	void *buf = aligned_alloc(CACHELINE, MAX_MSG);
	bool measuring = false;

	if (!buf)
		die("out of memory");
	rabbit_declare_queue(c, q);
	amqp_confirm_select(c, RABBIT_CH);
	rabbit_rpc_ok(c, "confirm.select", false);
	d_start_line();
	warm_end = now_ns() + (uint64_t)(dcfg.warm_s * 1e9);
	end = warm_end + (uint64_t)(dcfg.seconds * 1e9);
	for (;;) {
		uint64_t tb = now_ns(), first = seq;

		if (!measuring && tb >= warm_end) {
			measuring = true;
			t0 = tb;
			base = seq;
		}
		if (measuring && tb >= end)
			break;
		for (unsigned i = 0; i < batch; i++, seq++) {
			amqp_bytes_t body = { .len = size, .bytes = buf };
			int err;

			fill(buf, size, seq);
			err = amqp_basic_publish(c, RABBIT_CH, amqp_empty_bytes,
						 amqp_cstring_bytes(q), 0, 0,
						 &props, body);
			if (err != AMQP_STATUS_OK)
				die("AMQP publish: %s",
				    amqp_error_string2(err));
		}
		/* delivery tags count the channel's publishes from 1 */
		wait_confirms(c, first - first0, batch);
		t = now_ns();
		if (measuring)
			d_lat(t - tb);
	}
	d_producer_done(seq - base, seq - first0, t - t0);
	rabbit_close(c);
	free(buf);
}

static void r_consume(const char *q, size_t size)
{
	amqp_connection_state_t c = rabbit_connect(false);
	uint64_t got = 0, next[D_MAX_PROD] = { 0 }, t0;

	rabbit_declare_queue(c, q);
	amqp_basic_qos(c, RABBIT_CH, 0, RMQ_PREFETCH, 0);
	rabbit_rpc_ok(c, "basic.qos", false);
	amqp_basic_consume(c, RABBIT_CH, amqp_cstring_bytes(q), amqp_empty_bytes,
			   0, 0, 0, amqp_empty_table);
	rabbit_rpc_ok(c, "basic.consume", false);
	d_start_line();
	t0 = now_ns();
	while (smp_load_acquire(&dsh->done) < dcfg.producers ||
	       got < dsh->total) {
		struct timeval tv = { 0, 100000 };
		amqp_envelope_t env;
		amqp_rpc_reply_t r;
		uint64_t seq = 0;
		unsigned pi;

		amqp_maybe_release_buffers(c);
		r = amqp_consume_message(c, &env, &tv, 0);
		if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    r.library_error == AMQP_STATUS_TIMEOUT)
			continue;
		if (r.reply_type != AMQP_RESPONSE_NORMAL)
			die("AMQP consume: reply type %d", r.reply_type);
		if (env.message.body.len >= sizeof(seq))
			memcpy(&seq, env.message.body.bytes, sizeof(seq));
		pi = (unsigned)(seq >> D_PROD_SHIFT);
		/* each publisher's messages whole and in its order */
		if (env.message.body.len != size || pi >= D_MAX_PROD ||
		    (seq & ((1ull << D_PROD_SHIFT) - 1)) != next[pi] ||
		    verify(env.message.body.bytes, size, seq))
			die("%s: message %llu is not the one sent", q,
			    (unsigned long long)seq);
		next[pi]++;
		if (amqp_basic_ack(c, RABBIT_CH, env.delivery_tag, 0))
			die("AMQP ack failed");
		amqp_destroy_envelope(&env);
		got++;
	}
	dsh->drain_ns = now_ns() - t0;
	dsh->received = got;
	amqp_queue_delete(c, RABBIT_CH, amqp_cstring_bytes(q), 0, 0);
	rabbit_rpc_ok(c, "queue.delete", false);
	rabbit_close(c);
}

void d_run_rabbit(unsigned bi, int si)
{
	struct dcell *c = &dcells[D_RABBIT][bi][si];
	pid_t kids[D_MAX_PROD + 1];
	unsigned np = dcfg.producers;
	char q[64];

	snprintf(q, sizeof(q), "rabbitmq.%u.%zu", d_batches[bi], sizes[si]);
	memset(dsh, 0, offsetof(struct dshared, lat));
	for (unsigned i = 0; i < np; i++) {
		kids[i] = d_fork(q);
		if (!kids[i]) {
			r_produce(q, d_batches[bi], sizes[si], i);
			_exit(0);
		}
	}
	kids[np] = d_fork(q);
	if (!kids[np]) {
		r_consume(q, sizes[si]);
		_exit(0);
	}
	d_wait_kids(kids, (int)np + 1, q);
	if (dsh->received != dsh->total)
		die("%s: %llu published, %llu received", q,
		    (unsigned long long)dsh->total,
		    (unsigned long long)dsh->received);
	d_cell_from_shared(c);
	fprintf(stderr, "  %-18s %9.0f msg/s  confirm p50 %9.1f us  p99 "
		"%9.1f us\n", q, c->rate, c->p50_us, c->p99_us);
}
