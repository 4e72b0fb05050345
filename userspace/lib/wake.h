/* SPDX-License-Identifier: MIT */
/*
 * wake.h - sleeping consumers and the producers that wake them.
 *
 * Each queue has up to 128 consumer seats; each seat has a bit in the
 * queue's sleep_mask and an eventfd, made by the daemon when a consumer
 * first takes the seat and kept until the queue is reclaimed. A process
 * that attaches to a queue receives the eventfds made so far; a producer
 * that later finds a sleeper on a seat it has no eventfd for fetches the
 * new ones (SEATS) before it claims that sleeper: see [SEATFD] below.
 * With the eventfds, a producer wakes any seat with no help from the
 * daemon (which may be dead).

 * The protocol [WAKE] (a Dekker pair; both sides use a SEQ_CST RMW
 * followed by smp_mb__after_atomic() and a load; the daemon, putting a
 * message back, is a producer too: dq_wake() in deliver.c):
 *
 *   consumer (seat_arm)                 producer (wake_after_publish)
 *   fetch_or(sleep_mask, bit)           cmpxchg(cell, full)   [ring.h]
 *   smp_mb__after_atomic()              smp_mb__after_atomic()
 *   if ring non-empty: disarm, run      m = load(sleep_mask)
 *   else block in read(eventfd)         for a set bit: fetch_and(~bit);
 *                                         if we cleared it: write(eventfd)
 *
 * Either the consumer sees the message or the producer sees the bit: no
 * lost wake-up. The fetch_and gives each announced sleeper to exactly one
 * producer, so a sleeper gets at most one eventfd write per sleep and a
 * message wakes one sleeper, not all (no thundering herd). No bit set
 * means no syscall: producers pay one load of a read-mostly line.
 *
 * Two backends deliver the token (docs/kernel.md): an eventfd write per
 * seat from userspace, or, when the kernel module is loaded, one
 * SHMBUS_IOC_WAKE for every seat a publish claimed when it claimed two or
 * more, topic fan-out included (consumers register their seat eventfd
 * with the module). A seat the module does not know (woken 0) gets the
 * eventfd write, so the claim is always paid.
 *
 * [SEATFD] A producer claims (clears) a bit only when it holds that
 * seat's eventfd. The daemon makes a seat's eventfd, then stores the
 * queue's seat_epoch (the count of eventfds made), then replies to the
 * consumer, which sets its bit only after that reply (a SEQ_CST RMW,
 * so a release). A producer that sees a sleeper's bit but lacks its fd
 * issues smp_rmb() and loads seat_epoch: it sees that epoch or a later
 * one. Its wake set records the epoch of the reply its fds came with
 * (every fd made up to that epoch), so the epochs differ, and it asks the
 * daemon for the fds (SEATS), then claims the seat. Equal epochs with an
 * fd missing mean the bit is no sleeper's (a member scribbled it): it is
 * left alone, unclaimed (clearing it could race with a consumer taking
 * that seat just then). The publish path is unchanged: the epoch is read only when
 * a sleeper's fd is missing, once per new seat per producer process.
 * What the daemon's death costs: a seat made after a producer last
 * fetched cannot be fetched any more; that producer leaves its bit set
 * for one that can (docs/decisions.md).
 *
 * Hand-overs. The seat a producer woke may not take the message (stopped,
 * killed, its handle freed, an event loop that does not receive). Three
 * more wakers then act, each exactly as a producer: it has seen a message
 * in the ring, issues a full fence, loads the mask and claims a set bit
 * with fetch_and before writing that seat's eventfd:
 *
 *   - the library, when a consumer handle is freed (or a receive returns
 *     an error) after a producer claimed its bit (seat_disarm() says so):
 *     consumer.c disarm();
 *   - the daemon, releasing a consumer's slot (death or detach), if a
 *     message waits: deliver.c queue_pass_wake();
 *   - the daemon's tick, when a message has waited at the same head
 *     position for 100 ms while a bit is set: deliver.c wake_stalled().
 *
 * The argument is the producer's: a consumer that arms after the waker's
 * mask load sees the message in seat_arm()'s re-check (its fetch_or and
 * fence come before its peek, the waker's peek and fence before its
 * load); one that armed before is in the mask and is claimed. The stopped
 * consumer's bit was cleared by the producer that woke it, so no waker
 * chooses it again until it re-arms. The producer's own path is
 * unchanged: one load of the mask when nobody sleeps.
 *
 * Tokens: a producer that cleared our bit owes us one. Every wake-up
 * read()s the eventfd, which drains all tokens, and arm() drains whatever
 * is there; a late token (claim seen at disarm, token arriving after)
 * costs one spurious wake-up, never a loop of them.
 */
#ifndef SHMBUS_WAKE_H
#define SHMBUS_WAKE_H

#include <pthread.h>

#include "shmbus/kmod.h"
#include "internal.h"
#include "ring.h"

/* The eventfds of one queue's seats, as this process holds them: fds[i]
 * is -1 until the daemon has made seat i's and we have fetched it; a fd,
 * once there, stays until the set is replaced (a new gen of the queue). */
struct wake_set {
	uint32_t qgen;
	uint32_t nr;
	uint32_t epoch;		/* the daemon's seat_epoch our fds are from */
	int fds[];
};

/* Per-bus table qid -> wake_set, read under liburcu-bp. */
struct wake_table {
	struct wake_set **sets;
	uint32_t n;
	uint32_t bus_id;		/* for the wake_sent probe */
	int kfd;			/* /dev/shmbus, or -1: eventfds */
	int arena_fd;			/* the proof the module wants */
	pthread_mutex_t lock;		/* serialises installers */
	/* fetch the seat eventfds of (qid, qgen) made so far and install
	 * them: 0 or -errno (NULL: cannot) */
	int (*refresh)(struct wake_table *t, uint32_t qid, uint32_t qgen);
};

/* Seats claimed by one publish, woken together by wake_batch_flush(). */
#define WAKE_BATCH_MAX	64

struct wake_batch {
	unsigned n;
	struct shmbus_kmod_target t[WAKE_BATCH_MAX];
};

/* Wake every seat in @b (one ioctl, or one eventfd write each), empty it.
 * Returns the number of seats woken. */
unsigned wake_batch_flush(struct wake_table *t, struct wake_batch *b);

int wake_table_init(struct wake_table *t, uint32_t n);
void wake_table_fini(struct wake_table *t);

/*
 * Add @fds (@nfds of them, seat order, for the seats set in @map) to the
 * wake set of (qid, qgen), a queue of @nr_seats seats, as of the daemon's
 * @epoch. Takes ownership of the fds in every case: a seat the set already
 * has an fd for keeps it and the new one is closed. A set of an older gen
 * is replaced and closed after an RCU grace period (no producer thread can
 * still write to it). -EPROTO if @map does not name @nfds seats below
 * @nr_seats.
 */
int wake_table_install(struct wake_table *t, uint32_t qid, uint32_t qgen,
		       int *fds, uint32_t nfds, const uint64_t *map,
		       uint32_t nr_seats, uint32_t epoch);

/* Index of @seat's fd among the fds of @map (the seats before it). */
static inline unsigned seat_map_index(const uint64_t *map, uint32_t seat)
{
	unsigned i = 0;

	for (uint32_t w = 0; w < seat / 64; w++)
		i += __builtin_popcountll(map[w]);
	return i + __builtin_popcountll(map[seat / 64] &
					((1ULL << (seat % 64)) - 1));
}

/*
 * Out of line: some seat of the queue is asleep. Claim up to @n of them
 * and wake them: at once, or, with @b, when the caller flushes @b (a
 * topic publish wakes all its subscriptions in one go). A sleeper whose
 * eventfd we lack makes us fetch the new ones first ([SEATFD]). Returns
 * the number of seats claimed.
 */
unsigned __wake_sleepers(struct wake_table *t, struct shmbus_queue *q,
			 uint32_t qid, uint32_t qgen, unsigned n,
			 struct wake_batch *b);

/*
 * After publishing @n messages to @q: wake up to @n sleeping seats.
 * [WAKE] pairs with seat_arm() (see the protocol above).
 */
static inline unsigned wake_after_publish(struct wake_table *t,
					  struct shmbus_queue *q, uint32_t qid,
					  uint32_t qgen, unsigned n)
{
	uint64_t any = 0;

	smp_mb__after_atomic();
	for (unsigned w = 0; w < SHMBUS_SEAT_WORDS; w++)
		any |= READ_ONCE(q->sleep_mask[w]);
	if (likely(!any))
		return 0;
	return __wake_sleepers(t, q, qid, qgen, n, NULL);
}

/* A consumer's seat, private to its handle. */
struct seat {
	uint64_t *word;			/* &queue->sleep_mask[seat / 64] */
	uint64_t bit;
	int fd;				/* our own dup of the seat eventfd */
	bool armed;			/* our bit may be set */
};

/*
 * If we are still armed from an earlier call but a producer cleared our bit
 * meanwhile (its token is in, or on its way to, our fd), we are not armed.
 */
void seat_refresh(struct seat *s);

/*
 * Announce that we are about to wait, then re-check @r. Returns 0 when
 * armed (a publish will write our eventfd), 1 when a message is already
 * there (we are disarmed; go and take it).
 */
int seat_arm(struct seat *s, struct ring *r);

/* Withdraw the announcement. True if a producer had claimed our bit
 * first: its token is ours (in the fd, or on its way). */
bool seat_disarm(struct seat *s);

/*
 * Block until our eventfd is written or @deadline (CLOCK_MONOTONIC ns,
 * INT64_MAX = never) passes, or until @hup_fd (the bus's control socket,
 * -1: none) says the daemon hung up. Must be armed. Returns 0 (woken;
 * maybe spuriously), -ETIMEDOUT, -EINTR, -ENOTCONN (the daemon is gone:
 * no token came). The caller disarms afterwards, inside
 * an epoch section after checking that the queue is still the one it armed
 * on: a deleted queue's descriptor may already serve a new queue, whose
 * sleep_mask is not ours to touch.
 */
int seat_sleep(struct seat *s, int64_t deadline, int hup_fd);

/* With the module: put (qid, gen, seat) -> @fd in it, or take it out.
 * Best effort: a seat the module does not know is woken by eventfd. */
void seat_kmod_register(struct wake_table *t, uint32_t qid, uint32_t gen,
			uint32_t seat, int fd);
void seat_kmod_unregister(struct wake_table *t, uint32_t qid, uint32_t gen,
			  uint32_t seat);

/* Read whatever tokens the eventfd holds, without blocking (epoll users:
 * before arming, so the fd is readable only for a new wake-up). */
void seat_drain(struct seat *s);

#endif /* SHMBUS_WAKE_H */
