/* SPDX-License-Identifier: MIT */
/*
 * client.h - the library's side of the control socket: finding the
 * daemon's socket, starting the daemon when it is absent, and one
 * request/reply exchange at a time (proto.h).
 */
#ifndef SHMBUS_CLIENT_H
#define SHMBUS_CLIENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "proto.h"

struct client {
	int fd;
	bool broken;		/* out of step: refuse, but keep fd open */
	uint32_t seq;
	int64_t deadline;	/* in the handshake: every reply is due by
				 * then (CLOCK_MONOTONIC); 0 afterwards */
	int timeout_ms;		/* the handshake's whole bound */
	pthread_mutex_t lock;	/* one exchange at a time */
};

/*
 * The socket path: $SHMBUS_SOCKET, else /run/shmbus/shmbusd.sock for root,
 * else $XDG_RUNTIME_DIR/shmbus/shmbusd.sock, else /tmp/shmbus-UID/...
 * Returns 0 or -ENAMETOOLONG.
 */
SHMBUS_PRIVATE_API
int shmbus_socket_path(char *buf, size_t len);

/*
 * Connect to the daemon at @path and say HELLO. If nothing listens there
 * and @autostart, start the daemon (which makes sure only one runs) and
 * retry until @timeout_ms. The same @timeout_ms bounds the connect()
 * (a daemon whose listen backlog is full), the HELLO and every exchange
 * until client_handshake_done(): -ETIMEDOUT past it. Returns 0 or -errno.
 */
int client_connect(struct client *c, const char *path, int timeout_ms,
		   bool autostart);
/* The bus is open: exchanges wait SBC_REPLY_TIMEOUT_MS each from now. */
void client_handshake_done(struct client *c);

/*
 * One exchange: send request @type with body @req (@reqlen), wait for the
 * reply (at most SBC_REPLY_TIMEOUT_MS, or until the handshake's deadline).
 * On status 0 the reply body is
 * copied to @rep (@replen must match the protocol) and up to *nfds fds are
 * stored in @fds (*nfds updated; extra fds closed). Returns the reply's
 * status (0 or -errno), or -ECONNRESET/-EPROTO/-ETIMEDOUT for transport
 * failures.
 */
int client_call(struct client *c, unsigned type, const void *req,
		size_t reqlen, void *rep, size_t replen, int *fds,
		unsigned *nfds);

void client_close(struct client *c);

#define SBC_REPLY_TIMEOUT_MS	10000

#endif /* SHMBUS_CLIENT_H */
