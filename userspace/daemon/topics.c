// SPDX-License-Identifier: MIT
/*
 * topics.c - pub/sub: subscriptions, their fan-out sets, and the seats
 * publishers need to wake subscribers.
 *
 * A subscription is an ordinary queue (ring, seats, leases, stats; no DLQ)
 * with kind DQ_SUB, named "PATTERN#GROUP" (or "PATTERN#~N" when
 * exclusive): '#' cannot appear in a queue name a client gives, so only
 * SUBSCRIBE reaches it. A topic is a directory entry of kind DQ_TOPIC
 * whose ring is its history; its fan-out set is an array of (qid, gen)
 * of the subscriptions whose pattern matches its name, in the ring area.
 *
 * The sets are RCU across processes: a publisher reads the topic's
 * fanout word and walks the array inside its epoch section; the daemon
 * writes a new array, release-stores the new word, and frees the old
 * array after a grace period. A subscription deleted meanwhile is still
 * in an old array: publishers skip it by its generation (and its ring is
 * reclaimed after the same kind of grace period).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmbusd.h"
#include "epoch.h"
#include "pool.h"

/* ---- fan-out sets --------------------------------------------------- */

/* Give topic @tq the fan-out array @ents (@n). False: no ring storage. */
static bool fanout_set(struct dbus *b, uint32_t tq,
		       const struct shmbus_fanout *ents, uint32_t n)
{
	struct dqueue *dq = &b->queues[tq];
	struct shmbus_queue *q = &b->arena.queues[tq];
	uint64_t units = 0, old_first = dq->fanout_first;
	uint64_t old_units = dq->fanout_units;
	int64_t first = 0;

	if (n == dq->fanout_n && n &&
	    !memcmp(ents, unit_addr(b, dq->fanout_first), n * sizeof(*ents)))
		return true;			/* unchanged */
	if (!n && !dq->fanout_units)
		return true;
	if (n) {
		units = units_for(n * sizeof(*ents));
		first = units_alloc(b, units);
		if (first < 0)
			return false;
		memcpy(unit_addr(b, (uint64_t)first), ents, n * sizeof(*ents));
	}
	dq->fanout_first = (uint64_t)first;
	dq->fanout_units = units;
	dq->fanout_n = n;
	/* [FANOUT] release: the array is written before publishers can see
	 * it (pairs with the acquire load in fanout_of(), lib fanout.c) */
	smp_store_release(&q->fanout, n ? ((uint64_t)first << 16) | n : 0);
	/* publishers may still be walking the old array */
	units_retire(b, old_first, old_units);
	return true;
}

void fanout_clear(struct dbus *b, uint32_t qid)
{
	fanout_set(b, qid, NULL, 0);
}

void fanout_refresh(struct dbus *b)
{
	const struct arena *a = &b->arena;
	struct shmbus_fanout *ents;

	ents = calloc(a->max_queues, sizeof(*ents));
	if (!ents) {
		log_err("bus '%s': out of memory for fan-out sets", b->name);
		return;
	}
	for (uint32_t t = 0; t < a->max_queues; t++) {
		const struct dqueue *tq = &b->queues[t];
		uint32_t n = 0;

		if (!tq->live || tq->kind != DQ_TOPIC)
			continue;
		for (uint32_t s = 0; s < a->max_queues; s++) {
			const struct dqueue *sq = &b->queues[s];

			if (sq->live && sq->kind == DQ_SUB &&
			    proto_pattern_match(sq->pattern, tq->name) &&
			    n < SHMBUS_FANOUT_MAX) {
				/* a persistent one is entered through its
				 * intake (durable.c): publishers copy */
				uint32_t e = sq->dur && sq->intake
					     ? sq->intake - 1 : s;

				ents[n].qid = e;
				ents[n].gen = b->queues[e].gen;
				n++;
			}
		}
		if (!fanout_set(b, t, ents, n))
			log_err("bus '%s': no ring storage for the fan-out set "
				"of topic '%s' (%u subscriptions); it keeps the "
				"old one", b->name, tq->name, n);
	}
	free(ents);
}

/* ---- subscriptions -------------------------------------------------- */

/*
 * Copy the history of every topic @pattern matches into new subscription
 * @sq: a reference per message (refcnt++ while the chunk is still the
 * shared message the history ring names: checked with the owner word
 * around the increment, as a seqlock).
 */
static unsigned history_copy(struct dbus *b, uint32_t sq)
{
	const struct arena *a = &b->arena;
	struct ring sr;
	unsigned copied = 0;

	dqueue_ring_level(b, &b->queues[sq], 0, &sr);
	for (uint32_t t = 0; t < a->max_queues; t++) {
		const struct dqueue *tq = &b->queues[t];
		struct ring hr;

		if (!tq->live || tq->kind != DQ_TOPIC || !tq->history ||
		    !proto_pattern_match(b->queues[sq].pattern, tq->name))
			continue;
		dqueue_ring_level(b, tq, 0, &hr);
		uint64_t pos = READ_ONCE(*hr.head), end = READ_ONCE(*hr.tail);

		/* the ring holds up to its power-of-two capacity: the newest
		 * `history` of them are the history */
		if (end > pos && end - pos > tq->history)
			pos = end - tq->history;
		for (; pos < end; pos++) {
			/* [RING] the chunk named is the published one */
			uint64_t v = smp_load_acquire(&ring_cell(&hr, pos)->v);
			uint32_t ref = SHMBUS_CELL_REF(v), rc;
			struct shmbus_chunk *c;
			uint64_t o;

			if (SHMBUS_CELL_SEQ(v) != (uint32_t)(pos + 1))
				continue;	/* already dropped */
			c = chunk_at(a, ref);
			if (!c)
				continue;
			/* [SEQ] the refcnt read below is no older than this
			 * owner word; a free and reuse in between changes
			 * the word's generation (pool.h chunk_own), which
			 * the re-check after the increment catches */
			o = smp_load_acquire(&c->owner);
			rc = READ_ONCE(c->refcnt);
			if (SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_SHARED || !rc ||
			    !atomic_cmpxchg(&c->refcnt, &rc, rc + 1))
				continue;
			if (READ_ONCE(c->owner) != o ||
			    READ_ONCE(ring_cell(&hr, pos)->v) != v) {
				/* freed (and maybe reused) meanwhile: undo */
				chunk_unref(a, NULL, ref);
				continue;
			}
			if (ring_enqueue(&sr, ref)) {
				chunk_unref(a, NULL, ref);
				break;		/* the subscription is full */
			}
			copied++;
		}
	}
	return copied;
}

int sub_create(struct dbus *b, const struct peer *p,
	       const struct sbc_subscribe *req, const char *name,
	       struct request *r)
{
	struct sbc_queue_declare d = { 0 };
	struct sbc_queue_declare_reply dr;
	bool exclusive = !req->group[0];
	struct dqueue *sq;
	int err, id;

	memcpy(d.name, name, sizeof(d.name));
	d.max_len = req->max_len;
	d.max_consumers = exclusive ? 1 : req->max_consumers;
	d.lease_ns = req->lease_ns;
	/* messages come from publishers of any matching topic */
	d.msg_size = b->arena.pool[b->arena.nr_pools - 1].payload_max;
	err = queue_create(b, p, &d, &dr, DQ_SUB);
	if (err)
		return err;
	id = (int)dr.qid;
	sq = &b->queues[id];
	memcpy(sq->pattern, req->pattern, sizeof(sq->pattern));
	memcpy(sq->group, req->group, sizeof(sq->group));
	sq->durable = !exclusive && (req->flags & SBC_SUB_DURABLE);
	sq->drop_oldest = req->flags & SBC_SUB_DROP_OLDEST;
	/* the flags a daemon adopting the bus reads back */
	dqueue_republish(b, (uint32_t)id);
	if (req->flags & SBC_SUB_PERSISTENT) {
		err = durable_subscribe(b, p, (uint32_t)id, req, r);
		if (err) {
			dqueue_delete(b, id);
			return err;
		}
	}
	if (req->flags & SBC_SUB_HISTORY) {
		unsigned h = history_copy(b, (uint32_t)id);

		if (h)
			log_info("bus '%s': subscription '%s' starts with %u "
				 "messages of history", b->name, d.name, h);
	}
	fanout_refresh(b);
	log_info("bus '%s': subscription '%s' created (%s%s)", b->name, d.name,
		 sq->dur ? "persistent" : sq->durable ? "durable" : "ephemeral",
		 sq->drop_oldest ? ", drop-oldest" : ", block");
	return id;
}

int subscribe(struct dbus *b, const struct peer *p, unsigned perms,
	      const struct sbc_subscribe *req, struct sbc_attach_reply *rep,
	      int **fds, unsigned *nfds, struct request *r)
{
	char name[SHMBUS_NAME_MAX] = { 0 };
	struct sbc_attach at = { 0 };
	bool exclusive = !req->group[0];
	int n, err, id;

	if (!(perms & 4))
		return -EACCES;
	n = exclusive
	    ? snprintf(name, sizeof(name), "%s#~%llu", req->pattern,
		       (unsigned long long)++b->excl_seq)
	    : snprintf(name, sizeof(name), "%s#%s", req->pattern, req->group);
	if (n < 0 || n >= (int)sizeof(name))
		return -ENAMETOOLONG;
	id = dqueue_find(b, name);
	if (id >= 0 && (req->flags & SBC_SUB_PERSISTENT) &&
	    !b->queues[id].dur) {
		req_reason(r, "subscription '%s' exists and is not persistent",
			   name);
		return -EEXIST;
	}
	if (id < 0) {
		id = sub_create(b, p, req, name, r);
		if (id < 0)
			return id;
	}
	memcpy(at.name, b->queues[id].name, sizeof(at.name));
	at.role = SHMBUS_ROLE_CONSUMER;
	err = slot_attach(b, p, perms, &at, rep, fds, nfds);
	if (err && b->queues[id].kind == DQ_SUB)
		sub_released(b, (uint32_t)id, b->queues[id].gen);
	return err;
}

int unsubscribe(struct dbus *b, const struct peer *p,
		const struct sbc_unsubscribe *req)
{
	char name[SHMBUS_NAME_MAX];
	int n, id;

	(void)p;
	n = snprintf(name, sizeof(name), "%s#%s", req->pattern, req->group);
	if (n < 0 || n >= (int)sizeof(name))
		return -ENAMETOOLONG;
	id = dqueue_find(b, name);
	if (id < 0 || b->queues[id].kind != DQ_SUB)
		return -ENOENT;
	dqueue_delete(b, id);
	return 0;
}

void sub_released(struct dbus *b, uint32_t qid, uint32_t qgen)
{
	struct dqueue *sq = &b->queues[qid];

	if (!dqueue_is(b, qid, qgen) || sq->kind != DQ_SUB || sq->durable)
		return;
	for (uint32_t s = 0; s < b->arena.max_slots; s++)
		if (b->slots[s].conn_id && b->slots[s].qid == qid &&
		    b->slots[s].qgen == qgen)
			return;		/* consumers left */
	log_info("bus '%s': ephemeral subscription '%s' has no consumers "
		 "left; deleted", b->name, sq->name);
	dqueue_delete(b, (int)qid);
}

int seats_request(struct dbus *b, unsigned perms, const struct sbc_seats *req,
		  struct sbc_seats_reply *rep, int **fds, unsigned *nfds)
{
	const struct dqueue *dq;

	/* producers wake consumers; a consumer's nack puts a message back
	 * and wakes one too */
	if (!(perms & 6))
		return -EACCES;
	if (!dqueue_is(b, req->qid, req->gen))
		return -EIDRM;
	dq = &b->queues[req->qid];
	rep->nr_seats = dq->nr_seats;
	rep->seat_epoch = dq->seat_epoch;
	*nfds = seat_fds_of(dq, rep->seat_map, fds);
	return 0;
}
