// SPDX-License-Identifier: MIT
/*
 * intake.c - the intake of a persistent queue: producers publish into it
 * (the daemon bound them to it at attach), the daemon is its only
 * consumer. Woken through the intake's seat (its eventfd is the daemon's
 * own), it takes a batch from each intake without consuming it, appends a
 * PUB record per message to the queue's journal and writes them; then, per
 * message, it owns the chunk (a hold record naming the queue), takes it
 * out of the intake, and puts it into the queue. Then the producers'
 * confirms: one word per producer slot ("every id up to here"), raised at
 * once (sync never) or when the sync that covers the batch is done.
 *
 * Crash safety of the hand-over: a chunk stays in the intake until its
 * record is written (a daemon killed before leaves it there: the next one
 * journals it again; a PUB of a live id is idempotent). Then its hold
 * record names the queue and the daemon owns it (QUEUED), then it leaves
 * the intake, then ring_put() puts it into the queue: a daemon killed in
 * between leaves a chunk that adoption requeues by its hold record
 * (adopt_held()).
 */
#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shmbusd.h"
#include "room.h"

#define DRAIN_BATCH		1024u	/* messages per journal write */
#define DRAIN_BUDGET		4096u	/* per event-loop turn and intake */

/* ---- confirms ---------------------------------------------------------- */

/* Tell producer slot (@si, @gen) of @b: its messages up to @id are
 * confirmed, @err nonzero: failed. */
void slot_confirm(struct dbus *b, uint32_t si, uint32_t gen,
			 uint64_t id, int err)
{
	struct shmbus_slot *s;

	if (si >= b->arena.max_slots || b->slots[si].gen != gen ||
	    !b->slots[si].conn_id)
		return;		/* gone: nobody waits */
	s = &b->arena.slots[si];
	if (err) {
		WRITE_ONCE(s->failed_err, err);
		WRITE_ONCE(s->failed, READ_ONCE(s->failed) + 1);
	}
	/* [CONFIRM] release: failed and failed_err before confirmed (pairs
	 * with the acquire in lib confirm_wait()) */
	if (id > READ_ONCE(s->confirmed))
		smp_store_release(&s->confirmed, id);
	else if (!err)
		return;
	WRITE_ONCE(s->cseq, READ_ONCE(s->cseq) + 1);
	/* [CWAKE] the bump, then waiting: pairs with the producer's
	 * waiting, fence, confirmed (lib confirm.c) */
	smp_mb();
	if (READ_ONCE(s->waiting)) {
		WRITE_ONCE(s->waiting, 0);
		/* a shared futex: the arena is a MAP_SHARED memfd */
		syscall(SYS_futex, &s->cseq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
	}
}

static int pend_add(struct dur *du, uint64_t pos, uint32_t si, uint32_t gen,
		    uint64_t id, int err)
{
	if (du->npend == du->pcap) {
		size_t cap = du->pcap ? 2 * du->pcap : 64;
		struct pend *p = realloc(du->pend, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		du->pend = p;
		du->pcap = cap;
	}
	du->pend[du->npend++] = (struct pend){ .pos = pos, .id = id,
					       .slot = si, .gen = gen,
					       .err = err };
	return 0;
}

/* Confirm every pending confirm of @du covered by position @upto. */
void pend_flush(struct dbus *b, struct dur *du, uint64_t upto)
{
	size_t k = 0;

	for (size_t i = 0; i < du->npend; i++) {
		struct pend *p = &du->pend[i];

		if (p->pos <= upto)
			slot_confirm(b, p->slot, p->gen, p->id, p->err);
		else
			du->pend[k++] = *p;
	}
	du->npend = k;
}

/* ---- the intake: journal, then into the queue --------------------------- */

/* The message in chunk @c as a journal record, its lengths checked
 * against its pool. False if the header is garbage. */
bool chunk_jmsg(const struct dbus *b, uint32_t ref,
		       struct shmbus_chunk *c, struct jmsg *m, int64_t now,
		       int64_t rt)
{
	uint32_t len = READ_ONCE(c->len), al = READ_ONCE(c->attr_len);

	if (ALIGN_UP((uint64_t)len, 8) + al >
	    b->arena.pool[SHMBUS_REF_POOL(ref)].payload_max)
		return false;
	memset(m, 0, sizeof(*m));
	m->id = READ_ONCE(c->id);
	m->pub_rt = (uint64_t)rt;
	m->expires_rt = to_rt(READ_ONCE(c->expires_ns), now, rt);
	m->due_rt = to_rt(READ_ONCE(c->not_before_ns), now, rt);
	m->corr_id = READ_ONCE(c->corr_id);
	m->dedup_key = READ_ONCE(c->dedup_key);
	m->delivery_count = READ_ONCE(c->delivery_count);
	m->mflags = READ_ONCE(c->flags) & SHMBUS_CF_CHECKSUM ? JM_CHECKSUM : 0;
	m->prio = READ_ONCE(c->prio);
	m->dl_reason = READ_ONCE(c->dl_reason);
	m->dl_count = READ_ONCE(c->dl_count);
	m->len = len;
	m->attr_len = al;
	m->payload = chunk_payload(c);
	m->attrs = chunk_payload(c) + ALIGN_UP(len, 8);
	return m->id != 0;
}

struct taken {
	uint64_t pos, v;
	uint32_t ref;
	uint32_t slot;		/* producer slot, UINT32_MAX = none */
	uint64_t id;
	int err;		/* 0: journaled; < 0: it could not be, and
				 * is dropped; garbage: not a message */
	bool garbage;
};

/*
 * The confirms of batch @t (@n): a failed message's at once, with its
 * error; for the others the highest id per producer slot, at once (@now)
 * or when a sync covers position @pos. A failure raises the slot's word
 * past ids not yet synced: the waiting publisher gets the error, and a
 * later message of it is confirmed only by a later sync, which covers
 * these too.
 */
static void batch_confirms(struct dbus *b, struct dur *du, struct taken *t,
			   unsigned n, uint64_t pos, bool now)
{
	for (unsigned i = 0; i < n; i++) {
		uint32_t si = t[i].slot;
		uint64_t id = t[i].id;

		if (si == UINT32_MAX || t[i].garbage)
			continue;
		if (t[i].err) {
			slot_confirm(b, si, b->slots[si].gen, id, t[i].err);
			continue;
		}
		/* one entry per slot: its last message in the batch */
		for (unsigned k = i + 1; k < n; k++)
			if (t[k].slot == si && !t[k].err && !t[k].garbage) {
				id = MAX(id, t[k].id);
				t[k].slot = UINT32_MAX;
			}
		if (now)
			slot_confirm(b, si, b->slots[si].gen, id, 0);
		else if (pend_add(du, pos, si, b->slots[si].gen, id, 0))
			/* no memory to wait: say so rather than hang */
			slot_confirm(b, si, b->slots[si].gen, id, -ENOMEM);
	}
}

/* Journaled message @id did not reach queue @qid: settled, unless the
 * entry was handed a chunk already (an earlier copy of the id in this
 * batch, which is in the queue). */
static void hand_over_lost(struct dbus *b, uint32_t qid, uint64_t id)
{
	struct dur *du = b->queues[qid].dur;
	struct jent *e = journal_find(du->j, id);

	if (!e || e->user)
		return;
	journal_settle(du->j, id, SHMBUS_DLR_NONE);
	fold(b, qid, SHMBUS_CTR_CORRUPT, 1);
}

/* ---- into the queue, in order ------------------------------------------ */

void intake_put(struct dbus *b, uint32_t qid, uint32_t ref)
{
	struct dur *du = b->queues[qid].dur;

	if (!du->nback && ring_put(b, qid, ref))
		return;
	if (du->nback == du->backcap) {
		unsigned cap = du->backcap ? 2 * du->backcap : 64;
		uint32_t *n = realloc(du->backlog, cap * sizeof(*n));

		if (!n) {
			/* out of order rather than lost */
			timer_add(b, qid, b->queues[qid].gen, ref,
				  now_ns() + RETRY_FULL_NS);
			server_want_tick();
			return;
		}
		du->backlog = n;
		du->backcap = cap;
	}
	/* TIMED, ours, its hold record naming the queue (hand_over() or
	 * ring_put() wrote it): a daemon killed now leaves it to the next */
	du->backlog[du->nback++] = ref;
	server_want_tick();
}

int intake_backlog_flush(struct dbus *b, uint32_t qid)
{
	struct dur *du = b->queues[qid].dur;
	unsigned k = 0;

	while (k < du->nback && ring_put(b, qid, du->backlog[k]))
		k++;
	if (k) {
		memmove(du->backlog, du->backlog + k,
			(du->nback - k) * sizeof(*du->backlog));
		du->nback -= k;
	}
	return du->nback ? -EAGAIN : 0;
}

void intake_backlog_drop(struct dbus *b, uint32_t qid)
{
	struct dur *du = b->queues[qid].dur;

	for (unsigned i = 0; i < du->nback; i++)
		chunk_drop(b, du->backlog[i]);
	du->nback = 0;
}

/* How many more messages queue @qid's ring takes, about: its capacity
 * less what lies between its head hint and its true tail (the tail hint
 * may lag behind cells already filled). A head hint that lags makes it
 * less: the next batch takes the rest. */
static unsigned q_room(struct dbus *b, uint32_t qid)
{
	const struct dqueue *dq = &b->queues[qid];
	uint64_t tail, head;
	struct ring r;

	dqueue_ring_level(b, dq, 0, &r);
	tail = READ_ONCE(*r.tail);
	head = READ_ONCE(*r.head);
	for (uint32_t n = 0; n < dq->cap; n++, tail++)
		if (READ_ONCE(ring_cell(&r, tail)->v) !=
		    SHMBUS_CELL(tail + 1, SHMBUS_CELL_REF(READ_ONCE(
				ring_cell(&r, tail)->v))))
			break;
	return tail - head >= dq->cap ? 0 : (unsigned)(dq->cap - (tail - head));
}

/* Move chunk @ref, journaled, from the intake (cell @pos, @v of ring @r)
 * into queue @qid. */
static void hand_over(struct dbus *b, uint32_t qid, struct ring *r,
		      struct taken *t, int64_t now)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, t->ref);
	const struct dqueue *dq = &b->queues[qid];
	uint64_t o = READ_ONCE(c->owner);
	uint32_t gen = SHMBUS_OWNER_GEN(o);
	struct jent *e;

	/* ours, with a record naming the queue, before it leaves the
	 * intake: a daemon killed from here on leaves a chunk the next one
	 * requeues (adopt_held), or finds again in the intake */
	hold_note(c, gen, qid, dq->gen, now);
	if (SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_QUEUED ||
	    !atomic_cmpxchg(&c->owner, &o, SHMBUS_OWNER(gen, SHMBUS_CHUNK_QUEUED,
							SHMBUS_OWNER_DAEMON)) ||
	    ring_take_at(r, t->pos, t->v)) {
		/* a member is playing with it, or took it out of the intake
		 * (only a member would): not ours, and not in the queue. Its
		 * position is passed all the same (positions are claimed in
		 * order: the ones after it wait for it). Its record goes, or
		 * no look at a chunk would ever settle it: a live entry
		 * (memory, and a PUB kept on disk) per message a member
		 * publishes and takes back. */
		ring_take_at(r, t->pos, t->v);
		hand_over_lost(b, qid, t->id);
		return;
	}
	WRITE_ONCE(c->owner, SHMBUS_OWNER(gen, SHMBUS_CHUNK_TIMED,
					  SHMBUS_OWNER_DAEMON));
	e = journal_find(dq->dur->j, t->id);
	if (e)
		e->user = (uint64_t)t->ref + 1;
	intake_put(b, qid, t->ref);
}

/* Drop chunk @t, which could not be journaled, from the intake. */
static void drop_taken(struct dbus *b, struct ring *r, struct taken *t)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, t->ref);
	uint64_t o = c ? READ_ONCE(c->owner) : 0;

	if (ring_take_at(r, t->pos, t->v))
		return;
	if (!c || SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_QUEUED ||
	    !atomic_cmpxchg(&c->owner, &o,
			    SHMBUS_OWNER(SHMBUS_OWNER_GEN(o), SHMBUS_CHUNK_TIMED,
					 SHMBUS_OWNER_DAEMON)))
		return;
	chunk_drop(b, t->ref);
}

/*
 * One batch of persistent queue @qid's intake: journal, write, hand over,
 * confirm. Returns how many messages it took.
 */
int intake_batch(struct dbus *b, uint32_t qid)
{
	static struct taken t[DRAIN_BATCH];
	struct dqueue *dq = &b->queues[qid];
	struct dur *du = dq->dur;
	int64_t now = now_ns(), rt = realtime_ns();
	unsigned n = 0, good = 0, failed = 0, bad = 0, max;
	int err, first_err = 0;
	bool full;
	uint64_t pos, v;
	struct ring r;

	dqueue_ring_level(b, &b->queues[dq->intake - 1], 0, &r);
	du->blocked = false;
	if (!ring_peek_head(&r, &pos, &v))
		return 0;
	/* what waits for room goes first, and one producer's messages enter
	 * in order; beyond the queue's room and a backlog of its capacity,
	 * messages stay in the intake: its producers see it full (block or
	 * reject) */
	intake_backlog_flush(b, qid);
	/* what finds the queue full waits in the backlog, in order, up to
	 * the queue's capacity: a confirm does not wait for consumers */
	max = MIN(q_room(b, qid) + (du->nback < dq->cap ? dq->cap - du->nback
							  : 0), DRAIN_BATCH);
	du->blocked = !max;
	if (!max)
		return -EAGAIN;
	/* the bus owner's journals hold its disk quota: nothing more is
	 * journaled (its producers get EDQUOT) until settles free some */
	dur_disk_charge(du);
	full = quota_full(du->uid, Q_DISK);
	/* the full cells from the head on: only we take from an intake, so
	 * they stay full until we do */
	for (; n < max; n++, pos++) {
		uint64_t cv = READ_ONCE(ring_cell(&r, pos)->v);
		struct shmbus_chunk *c;
		struct jmsg m;
		uint64_t o;

		if (SHMBUS_CELL_SEQ(cv) != (uint32_t)(pos + 1))
			break;
		t[n] = (struct taken){ .pos = pos, .v = cv,
				       .ref = SHMBUS_CELL_REF(cv),
				       .slot = UINT32_MAX };
		c = chunk_at(&b->arena, t[n].ref);
		o = c ? READ_ONCE(c->owner) : 0;
		if (!c || SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_QUEUED ||
		    !chunk_jmsg(b, t[n].ref, c, &m, now, rt)) {
			t[n].garbage = true;	/* taken and counted below */
			bad++;
			continue;
		}
		t[n].id = m.id;
		if (SHMBUS_OWNER_SLOT(o) < b->arena.max_slots &&
		    b->slots[SHMBUS_OWNER_SLOT(o)].conn_id)
			t[n].slot = SHMBUS_OWNER_SLOT(o);
		m.order = 0;
		/* one that cannot be journaled (too big a record: the
		 * queue's msg_size keeps them in bounds; no memory) fails
		 * alone */
		t[n].err = full ? -EDQUOT : journal_pub(du->j, &m);
		if (t[n].err) {
			first_err = first_err ? first_err : t[n].err;
			failed++;
		} else {
			good++;
		}
	}
	err = good ? journal_flush(du->j) : 0;
	if (err) {
		/* the journal undid the buffered records: none of them is */
		for (unsigned i = 0; i < n; i++)
			if (!t[i].garbage && !t[i].err)
				t[i].err = err;
		failed += good;
		good = 0;
		first_err = err;
	}
	if (failed) {
		static int64_t last;

		if (now - last > NSEC_PER_SEC) {
			log_warn("bus %u:%s: queue '%s': journal write: %s; "
				 "%u messages dropped (their publishers get "
				 "the error)", b->owner_uid, b->name, dq->name,
				 strerror(-first_err), failed);
			last = now;
		}
		du->failed += failed;
		fold(b, qid, SHMBUS_CTR_DROPPED, failed);
	}
	du->written += good;
	for (unsigned i = 0; i < n; i++) {
		if (t[i].garbage) {
			if (!ring_take_at(&r, t[i].pos, t[i].v))
				fold(b, qid, SHMBUS_CTR_CORRUPT, 1);
		} else if (t[i].err) {
			drop_taken(b, &r, &t[i]);
		} else {
			hand_over(b, qid, &r, &t[i], now);
		}
	}
	/* room in the intake: its producers may sleep for it */
	room_made(&b->arena, &b->arena.queues[dq->intake - 1]);
	if (dq->sync == SHMBUS_JSYNC_NEVER || !good) {
		batch_confirms(b, du, t, n, 0, true);
	} else {
		batch_confirms(b, du, t, n, journal_written(du->j), false);
		if (!du->dirty_since)
			du->dirty_since = now;
		dur_sync_maybe(b, qid, now);
	}
	return (int)n;
}

/* Arm the intake of @qid: we sleep on its seat 0 (the daemon's eventfd).
 * True if a message is there already. */
bool intake_arm(struct dbus *b, uint32_t qid)
{
	const struct dqueue *dq = &b->queues[qid];
	struct shmbus_queue *iq = &b->arena.queues[dq->intake - 1];
	struct ring r;

	atomic_fetch_or(&iq->sleep_mask[0], 1ULL);
	/* [WAKE] the bit before the re-check: a producer's ring cmpxchg, its
	 * fence, its load of the mask (lib wake.h) pairs with this */
	smp_mb__after_atomic();
	dqueue_ring_level(b, &b->queues[dq->intake - 1], 0, &r);
	return ring_peek_nonempty(&r);
}

/* Every persistent queue's intake, each within a budget; armed when
 * empty. True if work is left (the caller comes back at once). The budget
 * is an intake's, and every intake gets its turn each time: one that a
 * bus's members keep full (of garbage, even) delays the other buses' by a
 * budget, not until it is empty. */
bool intake_drain_all(struct daemon *d)
{
	bool more = false;

	for (struct dbus *b = d->buses; b; b = b->next) {
		for (uint32_t qid = 0; qid < b->arena.max_queues; qid++) {
			const struct dqueue *dq = &b->queues[qid];
			unsigned total = 0;

			if (!dq->live || !dq->dur || !dq->intake)
				continue;
			for (;;) {
				int n = intake_batch(b, qid);

				/* full: the tick tries again (the intake keeps
				 * its messages, its producers see it full) */
				if (n < 0)
					break;
				total += (unsigned)n;
				if (n < (int)DRAIN_BATCH && !intake_arm(b, qid))
					break;
				if (total >= DRAIN_BUDGET) {
					more = true;
					break;
				}
			}
			dur_stats_publish(b, qid);
		}
	}
	return more;
}

/*
 * Confirm every producer of @qid's intake up to the last id it had taken
 * when we looked: what it published is in the intake (journaled here
 * first), or was journaled by the dead daemon (journal_open() made all of
 * that durable). One sync covers what we add; it blocks the loop, once
 * per adopted queue.
 */
void intake_confirm_all(struct dbus *b, uint32_t qid)
{
	const struct dqueue *dq = &b->queues[qid];
	const uint32_t iq = dq->intake - 1;
	uint64_t *last = calloc(b->arena.max_slots, sizeof(*last));
	struct jsync s;
	int err;

	if (!last)
		return;		/* they wait for confirms of new messages */
	for (uint32_t si = 0; si < b->arena.max_slots; si++)
		if (b->slots[si].conn_id && b->slots[si].qid == iq &&
		    b->slots[si].role == SHMBUS_ROLE_PRODUCER)
			last[si] = READ_ONCE(b->arena.slots[si].id_next);
	/* [CONFIRM] an id taken before we looked is in the intake by now,
	 * or its publish failed: a producer takes its id before its ring
	 * cmpxchg, and a failed publish is not waited for */
	while (intake_batch(b, qid) == (int)DRAIN_BATCH)
		;
	journal_sync_begin(dq->dur->j, &s);
	err = journal_sync_run(&s);
	journal_sync_end(dq->dur->j, &s, err);
	if (err) {
		log_err("bus %u:%s: queue '%s': journal sync: %s", b->owner_uid,
			b->name, dq->name, strerror(-err));
	} else {
		pend_flush(b, dq->dur, journal_synced(dq->dur->j));
		for (uint32_t si = 0; si < b->arena.max_slots; si++)
			if (last[si] > 1)
				slot_confirm(b, si, b->slots[si].gen,
					     last[si] - 1, 0);
	}
	free(last);
}

/* ---- delayed publishes ------------------------------------------------------ */

bool durable_delayed(struct dbus *b, const struct dslot *ds, uint32_t si,
		     uint32_t ref, int64_t delay_ns)
{
	const struct dqueue *di = &b->queues[ds->qid];
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	int64_t now = now_ns(), rt = realtime_ns();
	struct dqueue *dq;
	struct jent *e;
	struct jmsg m;
	uint32_t qid;
	int err;

	if (di->kind != DQ_INTAKE || !di->intake || !c)
		return false;
	qid = di->intake - 1;
	dq = &b->queues[qid];
	if (!dq->dur)
		return false;
	/* what this producer put into the intake before goes first: the
	 * slot's confirm covers every id up to this one */
	while (intake_batch(b, qid) == (int)DRAIN_BATCH)
		;
	if (!chunk_jmsg(b, ref, c, &m, now, rt)) {
		chunk_drop(b, ref);
		return true;
	}
	m.due_rt = (uint64_t)rt + (uint64_t)delay_ns;
	dur_disk_charge(dq->dur);
	err = quota_full(dq->dur->uid, Q_DISK) ? -EDQUOT
					      : journal_pub(dq->dur->j, &m);
	if (!err)
		err = journal_flush(dq->dur->j);
	if (!err && dq->sync != SHMBUS_JSYNC_NEVER) {
		struct jsync s;

		/* rare enough to sync here, in the loop */
		journal_sync_begin(dq->dur->j, &s);
		err = journal_sync_run(&s);
		journal_sync_end(dq->dur->j, &s, err);
		dq->dur->syncs++;
		if (!err)
			pend_flush(b, dq->dur, journal_synced(dq->dur->j));
	}
	if (err) {
		dq->dur->failed++;
		slot_confirm(b, si, ds->gen, m.id, err);
		fold(b, qid, SHMBUS_CTR_DROPPED, 1);
		chunk_drop(b, ref);
		return true;
	}
	dq->dur->written++;
	e = journal_find(dq->dur->j, m.id);
	if (e)
		e->user = (uint64_t)ref + 1;
	timer_add(b, qid, dq->gen, ref, now + delay_ns);
	server_want_tick();
	slot_confirm(b, si, ds->gen, m.id, 0);
	return true;
}
