/* SPDX-License-Identifier: MIT */
/*
 * consumer.h - what the consumer's files share: the handle (its seat, the
 * free entries of its delivery table, a message kept after -EMSGSIZE) and
 * the out-of-line lease bookkeeping a receive needs.
 *
 *   consumer.c  the handle, subscribing, receiving (take), fd and arm
 *   lease.c     settling a delivery (ack, nack, extend, reject, release)
 *               and the delivery-table bookkeeping these share
 */
#ifndef SHMBUS_CONSUMER_H
#define SHMBUS_CONSUMER_H

#include "bus.h"

struct shmbus_consumer {
	struct attachment at;
	struct seat seat;
	int64_t spin_ns;
	int64_t lease_ns;
	bool auto_ack;
	bool stash_valid;		/* a message kept after -EMSGSIZE */
	bool daemon_gone;		/* the control socket of connection
					 * gone_gen hung up: until the watcher
					 * swaps a new one in, a blocked
					 * receive looks again every
					 * DAEMONLESS_LOOK_NS */
	uint32_t gone_gen;		/* see daemon_gone */
	uint32_t prefetch;		/* delivery entries we may use */
	uint32_t nfree;
	uint32_t expired;		/* ref of an expired message to hand
					 * to the daemon (take() -> -ETIME) */
	uint32_t bad_sum;		/* ref of a message whose checksum
					 * failed, for the dead-letter queue
					 * (take() -> -ETIME) */
	uint16_t free[SHMBUS_LEASE_MAX];	/* free entry indices */
	/* The run we claimed (ring.h): positions [run_from, run_from +
	 * run_n) of run_ring, refs in run[]; run[run_i..] not taken yet
	 * (their cells still full, noted in our slot's claim) */
	struct ring *run_ring;
	uint64_t run_from;
	uint32_t run_n, run_i;
	uint32_t streak;		/* claims in a row that found one */
	uint32_t run[RING_RUN_MAX];
	struct shmbus_msg stash;
	void *replies;			/* reqrep.c: reply producers */
	unsigned replies_next;		/* round-robin eviction */
};

/* ---- consumer.c ---------------------------------------------------- */

/* Count @ctr once on the consumer's slot (its queue's statistics). */
void consumer_count(struct shmbus_consumer *c, unsigned ctr);
uint32_t consumer_qid(const struct shmbus_consumer *c);
struct shmbus *consumer_bus(const struct shmbus_consumer *c);
/* The replier's cache of reply-queue producers (reqrep.c owns it). */
void **consumer_reply_cache(struct shmbus_consumer *c);
unsigned c_rr_next(struct shmbus_consumer *c);
/* receive_view() until @deadline, an absolute now_ns() (INT64_MAX: no
 * end; one already passed: a few looks, then -ETIMEDOUT). */
int consumer_receive_until(struct shmbus_consumer *c, struct shmbus_msg *msg,
			   int64_t deadline);

/* ---- lease.c ------------------------------------------------------- */

/*
 * Find delivery entries the daemon took back (expired leases) and reuse
 * them. False if there was none: the consumer holds its prefetch.
 */
bool lease_recycle(struct shmbus_consumer *c);

/*
 * Give a topic message we hold a private copy (before a retry, a
 * dead-letter or a hand-over): 0 (*ref is the copy, or was private
 * already) or -ENOMEM (*ref is still the shared one).
 */
int make_private(struct shmbus_consumer *c, uint32_t *ref);

/*
 * Hand chunk *@ref we hold to the daemon (SBC_DISPOSE, @action), a topic
 * message as a private copy (*@ref is then the copy). 0, or -errno with
 * the chunk still ours (-ENOMEM: no memory for the copy).
 */
int dispose_call(struct shmbus_consumer *c, uint32_t *ref, uint32_t action,
		 int64_t delay_ns, uint32_t reason);

/*
 * Hand a chunk we hold to the daemon (SBC_DISPOSE, @action). If the daemon
 * cannot take it, put it back into the queue ourselves: a message is never
 * lost for want of a daemon. Returns the daemon's answer.
 */
int dispose(struct shmbus_consumer *c, uint32_t ref, uint32_t action,
	    int64_t delay_ns, uint32_t reason);

#endif /* SHMBUS_CONSUMER_H */
