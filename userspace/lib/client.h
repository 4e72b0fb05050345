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
	bool down;		/* the daemon hung up; a watcher is dialling
				 * the next one (rejoin) */
	bool rejoin;		/* a watcher reconnects after a hang-up:
				 * CALL_WAIT calls wait for it */
	bool autostart;		/* dialling may start the daemon */
	uint32_t seq;
	uint32_t gen;		/* sockets swapped in by client_swap();
				 * READ_ONCE() outside the lock */
	int64_t deadline;	/* in the handshake: every reply is due by
				 * then (CLOCK_MONOTONIC); 0 afterwards */
	int timeout_ms;		/* the handshake's whole bound, and how
				 * long a CALL_WAIT call waits for a
				 * reconnection */
	int abort_fd;		/* -1, or an fd whose readability cuts
				 * every wait short (-ECANCELED) */
	int dpidfd;		/* the daemon's pidfd, or -1 */
	char path[108];		/* the daemon's socket */
	char why[SBC_REASON_MAX];	/* why no reconnection will come */
	const uint32_t *deleted;	/* the bus's superblock word: once the
					 * daemon deleted the bus, a call with
					 * no connection says so (-EIDRM) */
	pthread_mutex_t lock;	/* one exchange at a time */
	pthread_cond_t cond;	/* gen, down or rejoin changed */
};

/* client_call_flags() */
#define CALL_WAIT	0x1u	/* the daemon is being reconnected: wait
				 * for it, up to timeout_ms */
#define CALL_RETRY	0x2u	/* idempotent: if the daemon died with the
				 * request unanswered, send it again over
				 * the next connection (implies waiting) */

/*
 * The socket path: $SHMBUS_SOCKET, else /run/shmbus/shmbusd.sock for root,
 * else $XDG_RUNTIME_DIR/shmbus/shmbusd.sock, else /tmp/shmbus-UID/...
 * Returns 0 or -ENAMETOOLONG.
 */
SHMBUS_PRIVATE_API
int shmbus_socket_path(char *buf, size_t len);
/* The same without $SHMBUS_SOCKET: where this uid's daemon listens by
 * default (whose state directory is the uid's default one). */
SHMBUS_PRIVATE_API
int shmbus_default_socket_path(char *buf, size_t len);

/*
 * Connect to the daemon at @path and say HELLO. If nothing listens there
 * and @autostart, start the daemon (which makes sure only one runs) and
 * retry until @timeout_ms. The same @timeout_ms bounds the connect()
 * (a daemon whose listen backlog is full), the HELLO and every exchange
 * until client_handshake_done(): -ETIMEDOUT past it. Returns 0 or -errno;
 * either way @c is to be client_fini()ed.
 */
int client_connect(struct client *c, const char *path, int timeout_ms,
		   bool autostart);
/* client_connect() to the daemon @opts names (socket_path, else the
 * default; connect_timeout_ms, else 5 s), starting it with @autostart
 * unless SHMBUS_OPEN_NOSTART. */
struct shmbus_open_opts;
int client_connect_opts(struct client *c,
			const struct shmbus_open_opts *opts, bool autostart);

/* The bus is open: exchanges wait SBC_REPLY_TIMEOUT_MS each from now. */
void client_handshake_done(struct client *c);

/*
 * One exchange: send request @type with body @req (@reqlen), wait for the
 * reply (at most SBC_REPLY_TIMEOUT_MS, or until the handshake's deadline).
 * On status 0 the reply body is
 * copied to @rep (@replen must match the protocol) and up to *nfds fds are
 * stored in @fds (*nfds updated; extra fds closed). Returns the reply's
 * status (0 or -errno), or -ECONNRESET/-EPROTO/-ETIMEDOUT for transport
 * failures, -ENOTCONN while there is no connection (at once: this never
 * waits for a reconnection; the data path calls it).
 */
int client_call(struct client *c, unsigned type, const void *req,
		size_t reqlen, void *rep, size_t replen, int *fds,
		unsigned *nfds);

/* client_call() with CALL_* @flags. A CALL_WAIT call that finds no
 * connection waits up to timeout_ms for the watcher's and then fails
 * -ENOTCONN; -ECONNRESET means the daemon died with the request
 * unanswered (done or not: nobody knows). shmbus_errmsg() says which. */
int client_call_flags(struct client *c, unsigned flags, unsigned type,
		      const void *req, size_t reqlen, void *rep,
		      size_t replen, int *fds, unsigned *nfds);

/*
 * client_call() with @ngive fds of @give attached to the request
 * (SCM_RIGHTS), never waiting for a reconnection: on a connection no
 * other thread uses yet (client_dial()), or the handle's own. The fds
 * stay the caller's. No fds come back.
 */
int client_call_give(struct client *c, unsigned type, const void *req,
		     size_t reqlen, const int *give, unsigned ngive,
		     void *rep, size_t replen);

/* ---- reconnection (rejoin.c drives it) ----------------------------- */

/*
 * Has the daemon @c talked to exited? Waits up to timeout_ms after its
 * hang-up for the process to be gone: a daemon that closed our
 * connection on purpose (a protocol error, a reader stuck in a grace
 * period) lives on, and we must not come back. True when unknown.
 * -ECANCELED when @abort_fd became readable.
 */
int client_daemon_exited(struct client *c, int abort_fd);

/* The hang-up was seen: calls wait (CALL_WAIT) or fail at once. */
void client_down(struct client *c);

/*
 * A new connection @nc to @c's daemon (same socket, same autostart),
 * HELLO said, still in its handshake (replies due within timeout_ms).
 * Every wait in it ends early when @abort_fd is readable (-ECANCELED).
 * 0 or -errno; on error @nc holds nothing.
 */
int client_dial(const struct client *c, struct client *nc, int abort_fd);

/*
 * Put @nc's socket in @c's place, and onto the descriptor number
 * @hup_fd (>= 0) too, so that sleepers polling it see the new daemon's
 * hang-up from now on; close the old socket; wake the waiting calls.
 * @broken: the new stream is out of step already (a reply came too
 * late). @nc is consumed.
 */
void client_swap(struct client *c, struct client *nc, int hup_fd,
		 bool broken);

/* Is the connection down, a reconnection still to come? */
bool client_is_down(struct client *c);

/* No reconnection will come (@why, for shmbus_errmsg()): waiting calls
 * fail -ENOTCONN from now on. */
void client_give_up(struct client *c, const char *why);

/* Close @c's socket (and the daemon's pidfd): the daemon sees EOF. */
void client_close(struct client *c);
/* client_close(), and the lock and condition variable go too. */
void client_fini(struct client *c);

#define SBC_REPLY_TIMEOUT_MS	10000

#endif /* SHMBUS_CLIENT_H */
