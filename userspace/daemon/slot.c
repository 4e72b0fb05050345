// SPDX-License-Identifier: MIT
/*
 * slot.c - participant slots: one per producer or consumer handle of a
 * client. Attach gives a handle a slot (and a consumer a seat: an eventfd
 * of its queue); release takes it back when the handle detaches or its
 * connection closes (kill -9 included): its cached and owned chunks, its
 * leases (lease.c), its counters folded into the queue, and a sweep for
 * what it may have left half-done (reclaim.c).
 *
 * Every decision is made from the daemon's record of a slot (struct
 * dslot), never from the arena's copy, which its owner can write.
 */
#include <string.h>

#include "shmbusd.h"
#include "pool.h"

bool slot_attached(void *ctx, uint32_t slot)
{
	const struct dbus *b = ctx;

	return slot < b->arena.max_slots && b->slots[slot].conn_id;
}

/* A topic takes no consumers, a subscription no producers. */
static int attach_allowed(const struct dqueue *dq, const struct sbc_attach *req)
{
	if ((dq->kind == DQ_TOPIC && req->role == SHMBUS_ROLE_CONSUMER) ||
	    (dq->kind == DQ_SUB && req->role == SHMBUS_ROLE_PRODUCER)) {
		log_info("'%s' is a %s: %s", dq->name,
			 dq->kind == DQ_TOPIC ? "topic" : "subscription",
			 dq->kind == DQ_TOPIC ? "subscribe to it"
					      : "publish to its topic");
		return -EPROTOTYPE;
	}
	return 0;
}

/* A free consumer seat of @dq, or UINT32_MAX. */
static uint32_t seat_pick(const struct dqueue *dq)
{
	for (uint32_t i = 0; i < dq->nr_seats; i++)
		if (!dq->seat_slot[i])
			return i;
	return UINT32_MAX;
}

/* A free slot of @b, or UINT32_MAX. */
static uint32_t slot_pick(const struct dbus *b)
{
	for (uint32_t i = 0; i < b->arena.max_slots; i++)
		if (!b->slots[i].conn_id && !b->slots[i].sweeping)
			return i;
	return UINT32_MAX;
}

/* Record slot @si for @p on queue @qid, and publish it in the arena:
 * written while the slot reads FREE, then made ACTIVE. */
static void slot_fill(struct dbus *b, uint32_t si, const struct peer *p,
		      uint32_t role, uint32_t qid, uint32_t seat)
{
	struct shmbus_slot *s = &b->arena.slots[si];
	struct dslot *ds = &b->slots[si];
	const struct dqueue *dq = &b->queues[qid];

	ds->conn_id = p->conn_id;
	ds->gen++;
	ds->role = role;
	ds->qid = qid;
	ds->qgen = dq->gen;
	ds->seat = seat;
	ds->pid = p->pid;
	s->gen = ds->gen;
	s->pid = (uint32_t)p->pid;
	s->start_time = p->start_time;
	s->conn_token = p->token;
	s->role = role;
	s->qid = qid;
	s->qgen = dq->gen;
	s->seat = seat;
	s->rcu_epoch = 0;
	s->id_next = s->id_end = 0;
	s->confirmed = 0;
	s->failed = 0;
	s->failed_err = 0;
	memset(s->ctr, 0, sizeof(s->ctr));
	for (unsigned i = 0; i < SHMBUS_MAX_POOLS; i++)
		s->cache[i].count = 0;
	leases_reset(s);	/* seq keeps counting across owners */
	s->claim_level = 0;
	s->claim_from = 0;
	s->claim_n = 0;
	/* [SLOT] release: the fields above before ACTIVE (pairs with the
	 * acquire loads of state in attach_call(), arena_queue_counters()
	 * and shmbus__pool_info()) */
	smp_store_release(&s->state, SHMBUS_SLOT_ACTIVE);
}

/* Give @seat of queue @qid to slot @si (daemon's and arena's records). */
static void seat_take(struct dbus *b, uint32_t qid, uint32_t seat, uint32_t si)
{
	struct shmbus_queue *q = &b->arena.queues[qid];

	b->queues[qid].seat_slot[seat] = si + 1;
	q->seat_slot[seat] = (uint16_t)(si + 1);
	WRITE_ONCE(q->seat_used[seat / 64],
		   q->seat_used[seat / 64] | (1ULL << (seat % 64)));
}

int slot_attach(struct dbus *b, const struct peer *p, unsigned perms,
		const struct sbc_attach *req, struct sbc_attach_reply *rep,
		int **fds, unsigned *nfds)
{
	uint32_t seat = UINT32_MAX, si;
	struct dqueue *dq;
	int id, err;

	if (req->role != SHMBUS_ROLE_PRODUCER && req->role != SHMBUS_ROLE_CONSUMER)
		return -EINVAL;
	if (!(perms & (req->role == SHMBUS_ROLE_PRODUCER ? 2 : 4)))
		return -EACCES;
	id = dqueue_find(b, req->name);
	if (id < 0)
		return id;
	dq = &b->queues[id];
	err = attach_allowed(dq, req);
	if (err)
		return err;
	/* the producers of a persistent queue publish into its intake
	 * (durable.c): the daemon journals, then moves each message on */
	if (req->role == SHMBUS_ROLE_PRODUCER && dq->intake) {
		id = (int)dq->intake - 1;
		dq = &b->queues[id];
	}
	/* every release of a slot may leave a sweep waiting for a grace
	 * period: while a member holds those up (at most GP_HOLD_MAX_NS),
	 * attach-detach cycles must not pile them up without bound */
	if (b->sweeps >= SWEEPS_MAX) {
		log_info("bus '%s': %u orphan sweeps wait for a grace period; "
			 "attach refused until they are done", b->name,
			 b->sweeps);
		return -EAGAIN;
	}
	if (req->role == SHMBUS_ROLE_CONSUMER) {
		seat = seat_pick(dq);
		if (seat == UINT32_MAX) {
			log_info("queue '%s': all %u consumer seats taken",
				 dq->name, dq->nr_seats);
			return -EUSERS;
		}
		err = seat_fd_make(b, (uint32_t)id, seat);
		if (err)
			return err;
	}
	si = slot_pick(b);
	if (si == UINT32_MAX) {
		log_info("bus '%s': all %u participant slots taken", b->name,
			 b->arena.max_slots);
		return -EUSERS;
	}
	slot_fill(b, si, p, req->role, (uint32_t)id, seat);
	if (seat != UINT32_MAX)
		seat_take(b, (uint32_t)id, seat, si);
	rep->qid = (uint32_t)id;
	rep->qgen = dq->gen;
	rep->slot = si;
	rep->slot_gen = b->slots[si].gen;
	rep->seat = seat;
	rep->nr_seats = dq->nr_seats;
	rep->seat_epoch = dq->seat_epoch;
	*nfds = seat_fds_of(dq, rep->seat_map, fds);
	log_debug("bus '%s': pid %d attached slot %u to '%s' as %s (seat %d)",
		  b->name, p->pid, si, dq->name,
		  req->role == SHMBUS_ROLE_PRODUCER ? "producer" : "consumer",
		  (int)seat);
	return 0;
}

/* Slot @si's counters and chunks go to its live queue; its seat is free
 * again. A producer that died may have owed a sleeper its wake-up. */
static void slot_fold(struct dbus *b, uint32_t si, bool died,
		      unsigned reclaimed)
{
	const struct arena *a = &b->arena;
	struct shmbus_slot *s = &a->slots[si];
	struct dslot *ds = &b->slots[si];
	struct dqueue *dq = &b->queues[ds->qid];
	struct shmbus_queue *q = &a->queues[ds->qid];

	for (unsigned i = 0; i < SHMBUS_NR_COUNTERS; i++) {
		WRITE_ONCE(q->folded[i], q->folded[i] + READ_ONCE(s->ctr[i]));
		/* folded once, also by a daemon that releases it again */
		WRITE_ONCE(s->ctr[i], 0);
	}
	WRITE_ONCE(q->folded[SHMBUS_CTR_RECLAIMED],
		   q->folded[SHMBUS_CTR_RECLAIMED] + reclaimed);
	if (ds->seat < dq->nr_seats) {
		uint64_t bit = 1ULL << (ds->seat % 64);

		dq->seat_slot[ds->seat] = 0;
		atomic_fetch_and(&q->sleep_mask[ds->seat / 64], ~bit);
		q->seat_slot[ds->seat] = 0;
		WRITE_ONCE(q->seat_used[ds->seat / 64],
			   q->seat_used[ds->seat / 64] & ~bit);
	}
	/* A producer killed between taking a sleeper's bit and writing its
	 * eventfd would leave that consumer asleep on a non-empty queue:
	 * wake every consumer of its queue (a spurious wake-up costs one
	 * read()). */
	if (died && ds->role == SHMBUS_ROLE_PRODUCER)
		seats_kick(dq, false);
	/* A consumer a producer had woken (its bit cleared, its token
	 * written) and that left without taking the message: the next
	 * sleeper gets the wake-up. Its own bit is clear by now. */
	if (ds->role == SHMBUS_ROLE_CONSUMER)
		queue_pass_wake(b, ds->qid);
}

/*
 * The owner of slot @si is gone (detached or dead): fold its counters into
 * its queue, return its cached and owned chunks, free its seat, and give
 * the queue's consumers a wake-up in case it died owing one.
 */
void slot_release(struct dbus *b, uint32_t si, bool died)
{
	const struct arena *a = &b->arena;
	struct shmbus_slot *s = &a->slots[si];
	struct dslot *ds = &b->slots[si];
	const struct dqueue *dq = &b->queues[ds->qid];
	bool live = dq->live && dq->gen == ds->qgen;
	bool keep = false;
	unsigned reclaimed;

	/* [SLOT] stat readers skip it from now on (counters not yet
	 * folded: a momentary undercount, never a double count) */
	smp_store_release(&s->state, SHMBUS_SLOT_DEAD);
	pool_drain_slot(a, s);
	if (ds->role == SHMBUS_ROLE_CONSUMER && live)
		claims_release(b, si);	/* the run it did not take */
	if (ds->role == SHMBUS_ROLE_CONSUMER) {
		uint32_t cand[SHMBUS_LEASE_MAX];
		unsigned n = leases_release(b, si, cand);

		/* messages a dead consumer may have been taking: its slot
		 * stays DEAD, their names in its table, until the sweep is
		 * over (one that detached was taking nothing: its handle's
		 * one thread asked to detach) */
		if ((died || n) && sweep_start(b, si, cand, n) && n && died)
			keep = true;
	}
	/* its dedup keys by its chunks, before they are freed */
	if (died && ds->role == SHMBUS_ROLE_PRODUCER)
		dedup_dead_producer(b, si);
	reclaimed = pool_reclaim_owned(a, si);
	if (died && ds->role == SHMBUS_ROLE_PRODUCER)
		sweep_start(b, si, NULL, 0);
	if (live)
		slot_fold(b, si, died, reclaimed);
	if (reclaimed || died)
		log_info("bus '%s': slot %u of pid %d %s; %u chunks reclaimed",
			 b->name, si, (int)ds->pid, died ? "died" : "detached",
			 reclaimed);
	if (ds->role == SHMBUS_ROLE_CONSUMER && dq->kind == DQ_SUB) {
		ds->conn_id = 0;	/* not one of its consumers any more */
		sub_released(b, ds->qid, ds->qgen);
	}
	s->rcu_epoch = 0;
	s->seat = UINT32_MAX;
	ds->conn_id = 0;
	ds->seat = UINT32_MAX;
	ds->sweeping = keep;
	if (!keep)
		smp_store_release(&s->state, SHMBUS_SLOT_FREE);	/* [SLOT] */
	/* a claim it was making when it died (before its note could
	 * count, or a single position: a publisher dropping the oldest,
	 * which for a topic's is in its subscriptions) goes back */
	if (live && died && ds->role == SHMBUS_ROLE_PRODUCER)
		claims_sweep(b, dq->kind == DQ_TOPIC ? CLAIMS_ALL : ds->qid);
	else if (live && died)
		claims_sweep(b, ds->qid);	/* killed mid-claim */
}

void slot_swept(struct dbus *b, uint32_t si, uint32_t gen)
{
	struct dslot *ds;

	if (si >= b->arena.max_slots)
		return;
	ds = &b->slots[si];
	if (!ds->sweeping || ds->gen != gen)
		return;
	leases_reset(&b->arena.slots[si]);
	ds->sweeping = false;
	/* [SLOT] */
	smp_store_release(&b->arena.slots[si].state, SHMBUS_SLOT_FREE);
}

int slot_detach(struct dbus *b, const struct peer *p,
		const struct sbc_detach *req)
{
	if (req->slot >= b->arena.max_slots ||
	    b->slots[req->slot].conn_id != p->conn_id ||
	    b->slots[req->slot].gen != req->slot_gen)
		return -ESRCH;
	slot_release(b, req->slot, false);
	pools_rebuild(b);
	return 0;
}
