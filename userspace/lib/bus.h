/* SPDX-License-Identifier: MIT */
/*
 * bus.h - the bus handle behind the opaque public type (bus.c), what
 * producers and consumers share for attaching to a queue (attach.c), and
 * what the bus's other files need of each other: control.c's request
 * helper, reqrep.c's per-handle state.
 */
#ifndef SHMBUS_BUS_H
#define SHMBUS_BUS_H

#include <sys/types.h>
#include <unistd.h>

#include "client.h"
#include "internal.h"
#include "ring.h"
#include "wake.h"

/*
 * The watcher of a bus handle (rejoin.c): a thread that waits for the
 * daemon's hang-up and then joins the next daemon, and the DETACHes owed
 * to the daemon meanwhile.
 */
struct rejoin {
	pthread_t thread;
	bool enabled;		/* this handle has a watcher (owes DETACHes) */
	bool running;		/* its thread runs (stopped around fork()) */
	bool done;		/* it returned for good: not started again */
	bool unsettled;		/* stopped after a REJOIN, before the seats
				 * and DETACHes went: the next one sends them */
	bool listed;		/* in this process's list (rejoin.c) */
	int stop_fd;		/* eventfd: readable = stop */
	uint64_t token;		/* our connection's conn_token */
	pthread_mutex_t lock;	/* the owed DETACHes */
	struct sbc_detach *owed;
	uint32_t nr_owed, cap_owed;
	struct shmbus *next, **pprev;
};

struct shmbus {
	struct arena arena;
	struct client conn;
	struct wake_table wakes;
	char name[SHMBUS_NAME_MAX];
	pid_t pid;		/* opener: a forked child must reopen */
	struct reqrep *rr;	/* request-reply, created on first request */
	/* shmbus__reply(): its cache of reply-queue producers */
	pthread_mutex_t reply_lock;
	void *replies;
	unsigned replies_next;
	int arena_fd;
	int hup_fd;		/* a dup of the control socket: sleeping
				 * consumers poll it for the daemon's
				 * hang-up (consumer.c, sleep_until()) */
	bool rdonly;
	uint32_t owner_uid, owner_gid, mode;	/* the daemon's BUS_OPEN reply */
	struct rejoin rj;
};

/* What an attached producer or consumer knows about its queue and slot. */
struct attachment {
	struct shmbus *bus;
	struct shmbus_queue *q;
	struct shmbus_slot *slot;
	struct ring ring;
	uint32_t qid, qgen;
	uint32_t slot_idx, slot_gen;
	uint32_t seat;		/* consumers */
	uint32_t msg_size;	/* snapshot of the queue's msg_size */
	uint32_t overflow;	/* producers: SHMBUS_OVERFLOW_* */
	uint32_t nr_prio;	/* priority levels, 1..SHMBUS_MAX_PRIO */
	bool checksum;		/* SHMBUS_QF_CHECKSUM at attach: producers
				 * store, consumers verify every message */
	struct ring prio[SHMBUS_MAX_PRIO - 1];	/* levels 1.. */
	int seat_fd;		/* consumers: dup of our seat's eventfd */
	uint32_t deferred;	/* producers: messages published with
				 * SHMBUS_PUB_MORE whose wake-up is owed */
};

/* Is the queue still the one we attached to? Call inside an epoch. */
static inline bool attachment_live(const struct attachment *at)
{
	return likely(READ_ONCE(at->q->gen) == at->qgen);
}

/* attachment_live(), and not quarantined by the daemon (its ring was
 * damaged beyond repair, repair.c): 0, -EIDRM or -EUCLEAN. gen and flags
 * share the descriptor's first line: no extra cache miss. */
static inline int attachment_check(const struct attachment *at)
{
	if (unlikely(!attachment_live(at)))
		return -EIDRM;
	if (unlikely(READ_ONCE(at->q->flags) & SHMBUS_QF_DAMAGED))
		return -EUCLEAN;
	return 0;
}

/* The bus's id, the first argument of every probe. */
static inline uint32_t at_bus(const struct attachment *at)
{
	return at->bus->arena.bus_id;
}

/* Next message id for this slot (ids are unique on the bus). */
static inline uint64_t slot_next_id(struct shmbus *bus, struct shmbus_slot *s)
{
	uint64_t id = s->id_next;

	if (unlikely(id >= s->id_end || id == 0)) {
		/* relaxed: ids only need to be unique */
		id = atomic_fetch_add_relaxed(&bus->arena.sb->id_next, 1024);
		WRITE_ONCE(s->id_end, id + 1024);
	}
	WRITE_ONCE(s->id_next, id + 1);
	return id;
}

/*
 * Handles are not shared across fork(): the child must open its own bus.
 * 0, or -ECHILD in a child. check_pid() asks the kernel (a system call:
 * control calls, attach, free, close); check_pid_fast() compares with
 * the pid the library keeps (a load: the data path), which a child made
 * without atfork handlers updates at its first check_pid() or open.
 */
int check_pid(const struct shmbus *bus);
int check_pid_fast(const struct shmbus *bus);

/* ---- attach.c ------------------------------------------------------ */

/*
 * Ask the daemon for a slot bound to queue @name, as @role; install the
 * queue's seat eventfds in the bus's wake table; validate what the daemon
 * and the arena say. Returns 0 or -errno.
 */
int attach(struct shmbus *bus, const char *name, uint32_t role,
	   struct attachment *at);

/* The second half of attach(): send @rq (ATTACH or SUBSCRIBE), check the
 * reply against the arena, install the seat fds. @name is for messages. */
int attach_call(struct shmbus *bus, unsigned type, const void *rq,
		size_t rqlen, uint32_t role, const char *name,
		struct attachment *at);

/* The wake table's refresh: fetch the seat eventfds of (qid, qgen) the
 * daemon has made (SEATS) and add them to the table. 0 or -errno. */
int seats_fetch(struct wake_table *t, uint32_t qid, uint32_t qgen);

/* Give the slot back (best effort: if the daemon is gone it reclaims the
 * slot when it sees our connection close). */
void detach(struct attachment *at);

/* ---- control.c ----------------------------------------------------- */

/*
 * Start a request that names a queue: zero @req (whose first field is the
 * name) and set the name. Returns 0, -EINVAL, or -ECHILD after fork.
 */
int queue_request(const struct shmbus *bus, void *req, size_t len,
		  const char *name);

/* ---- rejoin.c ------------------------------------------------------ */

/* Start the watcher of @bus (opened, hup_fd set). Without it (no thread
 * could be made) the handle works as one whose daemon never comes back.
 * @token: the BUS_OPEN reply's conn_token. */
void rejoin_start(struct shmbus *bus, uint64_t token);

/* Stop the watcher and free what it holds. In a forked child, whose
 * copy of the handle has no thread, only the memory and fds go. */
void rejoin_stop(struct shmbus *bus);

/* Send @req over the next connection: the daemon died before it could
 * be sent (or answered) over connection @gen (bus->conn.gen before the
 * call). False if a new connection came meanwhile: send it there. */
bool rejoin_owe_detach(struct shmbus *bus, const struct sbc_detach *req,
		       uint32_t gen);

/* Did the handle see the daemon's hang-up on connection @gen (a value of
 * bus->conn.gen read before it looked)? The consumers' sleep. */
static inline bool conn_gen_current(const struct shmbus *bus, uint32_t gen)
{
	return READ_ONCE(bus->conn.gen) == gen;
}

/* ---- reqrep.c ------------------------------------------------------ */

/* Request-reply state of a bus handle. */
struct reqrep;
void reqrep_free(struct shmbus *bus);
/* A replying consumer's cache of reply-queue producers. */
void reply_cache_free(void *cache);

#endif /* SHMBUS_BUS_H */
