// SPDX-License-Identifier: MIT
/*
 * zmq.c - ZeroMQ under test: one PUSH/PULL pair per channel over ipc://
 * (a Unix socket in the run's directory), so that a round trip uses two
 * one-way channels as the pipes do. The receiver binds, the sender
 * connects. zmq_send() copies the local buffer into a message and blocks
 * at the high-water mark (1000 messages, the default), zmq_recv() copies
 * it out into ours, which is then verified. ZeroMQ has no busy-poll mode:
 * its I/O thread sleeps in epoll whatever the application does, and it
 * is created by zmq_ctx_new() after the child is pinned, so it shares
 * the child's CPU.
 */
#include <errno.h>
#include <stdio.h>
#include <zmq.h>

#include "bench.h"

static void *ctx;			/* the child's */
static char endpoint[NR_CHAN][160];
static unsigned nr_runs;

int zq_prepare(const struct run *r, int nchan)
{
	/* new names for every run: nothing of the last one is bound */
	nr_runs++;
	for (int c = 0; c < nchan; c++)
		snprintf(endpoint[c], sizeof(endpoint[c]),
			 "ipc://%s/zmq-%u-%d", peers_dir, nr_runs, c);
	return 0;
}

int zq_child_init(void)
{
	ctx = zmq_ctx_new();
	return ctx ? 0 : -errno;
}

void zq_child_fini(void)
{
	zmq_ctx_term(ctx);
	ctx = NULL;
}

int zq_open(struct end *e, int chan)
{
	/* a message left unsent when the peer is gone must not hang the
	 * exit; a reconnect is tried at 10 ms, not 100 ms */
	int linger = 5000, ivl = 10, err;
	void *s = zmq_socket(ctx, e->tx ? ZMQ_PUSH : ZMQ_PULL);

	if (!s)
		return -errno;
	if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger)) ||
	    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof(ivl)))
		goto fail;
	if (e->tx ? zmq_connect(s, endpoint[chan])
		  : zmq_bind(s, endpoint[chan]))
		goto fail;
	e->priv = s;
	return 0;
fail:
	err = -errno;
	zmq_close(s);
	return err;
}

void zq_close(struct end *e)
{
	zmq_close(e->priv);
	e->priv = NULL;
}

int zq_send(struct end *e, uint64_t seq)
{
	fill(e->buf, e->size, seq);
	while (zmq_send(e->priv, e->buf, e->size, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

int zq_recv(struct end *e, uint64_t seq)
{
	int n;

	while ((n = zmq_recv(e->priv, e->buf, MAX_MSG, 0)) < 0)
		if (errno != EINTR)
			return -errno;
	/* zmq_recv() returns the message's length even if it truncated */
	if ((size_t)n != e->size)
		return -EBADMSG;
	return verify(e->buf, e->size, seq);
}
