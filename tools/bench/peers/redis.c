// SPDX-License-Identifier: MIT
/*
 * redis.c - Redis pub/sub under test, through hiredis on the Unix socket
 * of a private redis-server that this program starts (no persistence,
 * no TCP port, no limit on a subscriber's output buffer: Redis would
 * otherwise drop a subscriber that falls behind, which here is a lost
 * message) and stops at exit. Redis is a broker: every message crosses
 * two sockets and a third process, which is not pinned (it runs on
 * whichever of the two CPUs is free).
 *
 * The sender PUBLISHes from its local buffer and keeps up to RD_WINDOW
 * replies unread (pipelining, as a client that cares about throughput
 * does); each reply is the number of subscribers that got the message,
 * and anything but 1 is a lost message. Before its first message it
 * waits until the channel has its subscriber (PUBSUB NUMSUB): Redis
 * drops what nobody listens to. The receiver reads the message hiredis
 * parsed and verifies it in place. No busy-poll mode: hiredis blocks in
 * read().
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

#include "bench.h"

#define RD_WINDOW	64	/* PUBLISH replies the sender may owe */
#define RD_WAIT_S	10	/* for the server, for a subscriber */

static pid_t server_pid;
static char sock_path[PATH_MAX];

struct rd_end {
	redisContext *c;
	unsigned pending;		/* PUBLISH replies not read yet */
	bool seen;			/* the channel has its subscriber */
	char chan[16];
};

pid_t rd_pid(void)
{
	return server_pid;
}

static bool rd_answers(void)
{
	redisContext *c = redisConnectUnix(sock_path);
	redisReply *r;
	bool ok = false;

	if (!c)
		return false;
	if (!c->err) {
		r = redisCommand(c, "PING");
		ok = r && r->type == REDIS_REPLY_STATUS;
		if (r)
			freeReplyObject(r);
	}
	redisFree(c);
	return ok;
}

int rd_start(void)
{
	char dir[PATH_MAX], log[PATH_MAX];
	const char *argv[] = {
		"redis-server", "--port", "0", "--unixsocket", sock_path,
		"--unixsocketperm", "700", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", log, "--daemonize", "no",
		"--client-output-buffer-limit", "pubsub 0 0 0", NULL,
	};

	snprintf(sock_path, sizeof(sock_path), "%s/redis.sock", peers_dir);
	snprintf(dir, sizeof(dir), "%s", peers_dir);
	snprintf(log, sizeof(log), "%s/redis.log", peers_dir);
	server_pid = peers_spawn("redis-server", argv, NULL);
	if (server_pid < 0)
		return (int)server_pid;
	return peers_wait_ready(server_pid, "redis-server", rd_answers,
				RD_WAIT_S, log);
}

void rd_stop(void)
{
	/* no save on SIGTERM: --save "" */
	bench_reap(server_pid, SIGTERM);
	server_pid = 0;
}

int rd_prepare(const struct run *r, int nchan)
{
	return server_pid > 0 ? 0 : -ESRCH;
}

static int rd_connect(struct rd_end *re)
{
	re->c = redisConnectUnix(sock_path);
	if (!re->c)
		return -ENOMEM;
	if (re->c->err) {
		fprintf(stderr, "redis: %s\n", re->c->errstr);
		return -ECONNREFUSED;
	}
	return 0;
}

int rd_open(struct end *e, int chan)
{
	struct rd_end *re = calloc(1, sizeof(*re));
	redisReply *r;
	int err;

	if (!re)
		return -ENOMEM;
	e->priv = re;
	snprintf(re->chan, sizeof(re->chan), "chan%d", chan);
	err = rd_connect(re);
	if (err || e->tx)
		return err;
	/* the reply is the subscription's confirmation */
	r = redisCommand(re->c, "SUBSCRIBE %s", re->chan);
	if (!r)
		return -EPROTO;
	err = r->type == REDIS_REPLY_ARRAY ? 0 : -EPROTO;
	freeReplyObject(r);
	return err;
}

/* A PUBLISH's reply: how many subscribers got the message. */
static int rd_read_reply(struct rd_end *re)
{
	redisReply *r;
	int err;

	if (redisGetReply(re->c, (void **)&r) != REDIS_OK || !r)
		return -EPROTO;
	err = r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? 0 : -ENOLINK;
	freeReplyObject(r);
	re->pending--;
	return err;
}

void rd_close(struct end *e)
{
	struct rd_end *re = e->priv;

	if (!re)
		return;
	while (re->c && !re->c->err && re->pending)
		if (rd_read_reply(re))
			die("redis: a message of %s reached no subscriber",
			    re->chan);
	if (re->c)
		redisFree(re->c);
	free(re);
	e->priv = NULL;
}

static int rd_wait_subscriber(struct rd_end *re)
{
	uint64_t end = now_ns() + RD_WAIT_S * 1000000000ull;

	while (now_ns() < end) {
		redisReply *r = redisCommand(re->c, "PUBSUB NUMSUB %s",
					     re->chan);
		bool there;

		if (!r)
			return -EPROTO;
		there = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
			r->element[1]->type == REDIS_REPLY_INTEGER &&
			r->element[1]->integer > 0;
		freeReplyObject(r);
		if (there)
			return 0;
		usleep(1000);
	}
	return -ETIMEDOUT;
}

int rd_send(struct end *e, uint64_t seq)
{
	struct rd_end *re = e->priv;
	int done = 0, err;

	if (!re->seen) {
		err = rd_wait_subscriber(re);
		if (err)
			return err;
		re->seen = true;
	}
	fill(e->buf, e->size, seq);
	if (redisAppendCommand(re->c, "PUBLISH %s %b", re->chan, e->buf,
			       e->size) != REDIS_OK)
		return -ENOMEM;
	/* out now: the round trip's pong waits for it */
	while (!done)
		if (redisBufferWrite(re->c, &done) != REDIS_OK)
			return -EPIPE;
	re->pending++;
	while (re->pending > RD_WINDOW) {
		err = rd_read_reply(re);
		if (err)
			return err;
	}
	return 0;
}

int rd_recv(struct end *e, uint64_t seq)
{
	struct rd_end *re = e->priv;
	redisReply *r, *m;
	int err;

	if (redisGetReply(re->c, (void **)&r) != REDIS_OK || !r)
		return -EPROTO;
	/* ["message", channel, payload] */
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
		freeReplyObject(r);
		return -EPROTO;
	}
	m = r->element[2];
	err = m->type == REDIS_REPLY_STRING && m->len == e->size ?
		verify(m->str, e->size, seq) : -EBADMSG;
	freeReplyObject(r);
	return err;
}
