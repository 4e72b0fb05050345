// SPDX-License-Identifier: MIT
/*
 * durable.c - persistent queues: declaring one (the queue, its intake,
 * its journal and queue.conf), deleting one, dead letters out of one, the
 * daemon's part in the event loop (its eventfd: intakes to drain and
 * syncs done; its tick: settles, syncs due, housekeeping), and the
 * journal's numbers in the arena. The intake is intake.c's, the journal
 * journal.c's, the sync thread syncer.c's, recovery recover.c's and the
 * state directory statedir.c's; docs/design.md, "Persistent queues", puts
 * them together.
 *
 * What leaves a queue is found, not told: consumers ack in shared memory
 * as on any queue, and the daemon's tick walks the queue's live journal
 * entries (in queue order, a bounded number per tick) and looks at the
 * chunk it put each into: a chunk that is free, or holds another message
 * id, means the message is gone (acked, expired, dropped): a SETTLE
 * record. A changed delivery count, a lease or a hold is a STATE record.
 * The daemon's own moves (dead-lettering) settle explicitly. So nothing
 * on the consumer's path changes, and a daemon that dies loses no settle:
 * the next one finds the same facts in the arena.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "shmbusd.h"
#include "probes.h"

#define POLL_HEAD		2048u	/* entries looked at per tick, oldest */
#define POLL_DEEP		2048u	/* ... and further on, round robin */
#define GC_PERIOD_NS		(100 * NSEC_PER_MSEC)
#define GC_BUDGET		(4u << 20)	/* bytes copied forward per gc */
#define DEF_SYNC_INTERVAL_NS	(2 * NSEC_PER_MSEC)
#define BLOCKED_RETRY_NS	NSEC_PER_MSEC	/* a full queue, looked at */

static int efd = -1;			/* intakes and sync completions */
static uint64_t segment_bytes;		/* --segment-size, 0 = the journal's */

/* Start a sync of @du's journal if none runs; else the running one's end
 * starts the next. */
void dur_sync_submit(struct dur *du)
{
	struct jsync s;
	int err;

	if (du->sync_token || !du->dirty_since)
		return;
	/* marked dirty by a flush that had nothing to write (a settle of a
	 * message already settled, a pass over a full intake): a sync
	 * would cover nothing, and a waiting publisher's 1 ms retries
	 * would make hundreds a second. A confirm waits only for records
	 * written after the last sync began, so none waits on this one. */
	if (journal_synced(du->j) >= journal_written(du->j)) {
		du->dirty_since = 0;
		return;
	}
	journal_sync_begin(du->j, &s);
	err = syncer_post(&s, &du->sync_token);
	if (err) {
		jsync_drop(&s);
		du->sync_token = 0;
		log_warn("journal sync: %s; retrying at the tick",
			 strerror(-err));
		return;
	}
	du->dirty_since = 0;
	du->last_sync = now_ns();
}

int64_t dur_sync_when(const struct dqueue *dq, const struct dur *du)
{
	if (!du->dirty_since || dq->sync == SHMBUS_JSYNC_NEVER)
		return INT64_MAX;
	if (dq->sync == SHMBUS_JSYNC_ALWAYS)
		return du->dirty_since;
	/* batch: at most one sync per interval, so the first write after
	 * a quiet spell is synced at once, and under load every interval
	 * gathers what all publishers wrote */
	return MAX(du->dirty_since,
		   du->last_sync + (int64_t)dq->sync_interval_ns);
}

void dur_sync_maybe(struct dbus *b, uint32_t qid, int64_t now)
{
	struct dqueue *dq = &b->queues[qid];
	int64_t when = dur_sync_when(dq, dq->dur);

	if (when == INT64_MAX)
		return;
	if (now >= when)
		dur_sync_submit(dq->dur);
	else
		server_want_tick_at(when);
}

/* ---- the journal's numbers in the arena --------------------------------- */

/* What @du's journal takes on disk, charged to the bus owner (disk
 * quota): its growth is forced (nothing asked for it), and past the limit
 * the intake refuses to journal more (intake_batch()). */
void dur_disk_charge(struct dur *du)
{
	struct journal_stats st;

	journal_stats(du->j, &st);
	if (st.bytes > du->charged)
		quota_force(du->uid, Q_DISK, st.bytes - du->charged);
	else
		quota_release(du->uid, Q_DISK, du->charged - st.bytes);
	du->charged = st.bytes;
}

void dur_stats_publish(struct dbus *b, uint32_t qid)
{
	const struct dqueue *dq = &b->queues[qid];
	struct dur *du = dq->dur;
	struct journal_stats st;
	struct shmbus_queue *iq;

	if (!du || !dq->intake)
		return;
	iq = &b->arena.queues[dq->intake - 1];
	dur_disk_charge(du);
	journal_stats(du->j, &st);
	WRITE_ONCE(iq->j_bytes, st.bytes);
	WRITE_ONCE(iq->j_live, st.live);
	WRITE_ONCE(iq->j_segments, st.segments);
	WRITE_ONCE(iq->j_failed, (uint32_t)du->failed);
	WRITE_ONCE(iq->j_replayed, st.replayed);
	WRITE_ONCE(iq->j_corrupt, st.corrupt);
	WRITE_ONCE(iq->j_syncs, du->syncs);
	WRITE_ONCE(iq->j_written, du->written);
	WRITE_ONCE(iq->j_interval_ns, dq->sync_interval_ns);
}

static void sync_histogram(struct dbus *b, int64_t ns)
{
	struct shmbus_sb *sb = b->arena.sb;
	uint64_t us = (uint64_t)MAX(ns, 0) / 1000;
	unsigned i = 0;

	while (us > 1 && i < 15) {
		us >>= 1;
		i++;
	}
	WRITE_ONCE(sb->sync_hist[i], READ_ONCE(sb->sync_hist[i]) + 1);
	WRITE_ONCE(sb->syncs, READ_ONCE(sb->syncs) + 1);
	WRITE_ONCE(sb->sync_ns, READ_ONCE(sb->sync_ns) + (uint64_t)MAX(ns, 0));
}

/* ---- settles: what left the queue -------------------------------------- */

/*
 * Look at entry @e of queue @qid's journal: the chunk it was put in still
 * holds it (a STATE record if its delivery count, lease or hold changed),
 * or not (settled). Returns true if @e was settled (and is gone).
 */
static bool poll_one(struct dbus *b, uint32_t qid, struct jent *e, int64_t now,
		     int64_t rt)
{
	struct dur *du = b->queues[qid].dur;
	struct shmbus_chunk *c;
	uint64_t o1, o2, id, due;
	uint32_t dc, st, fl;
	bool retry;

	if (!e->user)
		return false;		/* not loaded: on disk only */
	c = chunk_at(&b->arena, (uint32_t)(e->user - 1));
	if (!c) {
		journal_settle(du->j, e->id, SHMBUS_DLR_NONE);
		return true;
	}
	o1 = smp_load_acquire(&c->owner);
	id = READ_ONCE(c->id);
	dc = READ_ONCE(c->delivery_count);
	due = READ_ONCE(c->hold_due);
	/* [POLL] the header between two equal owner words is one
	 * message's: a chunk freed and reused changes the word (gen) */
	smp_rmb();
	o2 = READ_ONCE(c->owner);
	st = SHMBUS_OWNER_STATE(o1);
	if (o1 != o2)
		return false;		/* moving: look again next tick */
	if (st == SHMBUS_CHUNK_FREE || id != e->id) {
		journal_settle(du->j, e->id, SHMBUS_DLR_NONE);
		return true;
	}
	fl = e->mflags & ~JM_LEASED;
	if (st == SHMBUS_CHUNK_HELD)
		fl |= JM_LEASED;
	due = st == SHMBUS_CHUNK_TIMED ? to_rt(due, now, rt) : 0;
	/* A message waiting for room is re-armed a retry ahead on every
	 * pass: a journaled due before it says "due now" to a recovery
	 * already, so that is no change worth a record (and a sync) per
	 * retry. */
	retry = due && e->due_rt && due > e->due_rt &&
		due <= (uint64_t)rt + RETRY_FULL_NS + NSEC_PER_MSEC;
	/* a due time read through two clocks jitters by microseconds: a
	 * record only for a real change */
	if (dc != e->delivery_count || fl != e->mflags ||
	    (due && !retry && (due > e->due_rt + NSEC_PER_MSEC ||
			       due + NSEC_PER_MSEC < e->due_rt)) ||
	    (!due && e->due_rt))
		journal_state(du->j, e->id, dc, due, fl);
	return false;
}

/* The tick's walk of @qid's journal: the oldest entries, and a stretch
 * further on, resuming where the last walk stopped (round robin). */
static void poll_queue(struct dbus *b, uint32_t qid, int64_t now)
{
	struct dur *du = b->queues[qid].dur;
	int64_t rt = realtime_ns();
	struct jent *e, *n, *c;
	unsigned k = 0;

	for (e = journal_first(du->j); e && k < POLL_HEAD; e = n, k++) {
		n = journal_next(du->j, e);
		poll_one(b, qid, e, now, rt);
	}
	/* the cursor is an id: an entry settled since is simply not found */
	c = du->poll_id ? journal_find(du->j, du->poll_id) : NULL;
	if (c && e && c->order > e->order)
		e = c;
	for (k = 0; e && k < POLL_DEEP; e = n, k++) {
		n = journal_next(du->j, e);
		poll_one(b, qid, e, now, rt);
	}
	du->poll_id = e ? e->id : 0;
}

/* ---- persistent queues: open, declare, delete ---------------------------- */

/* Open @qid's journal in @dir and make @qid persistent. */
int dur_open(struct dbus *b, uint32_t qid, const char *dir,
		    const struct sbc_queue_declare *req)
{
	struct dqueue *dq = &b->queues[qid];
	struct journal_cfg cfg = { .dedup_window_ns = req->dedup_window_ns,
				   .segment_bytes = segment_bytes };
	char name[2 * SHMBUS_NAME_MAX + 16], why[256];
	struct dur *du = calloc(1, sizeof(*du));
	int err;

	if (!du)
		return -ENOMEM;
	snprintf(name, sizeof(name), "%u:%s/%s", (unsigned)b->owner_uid,
		 b->name, dq->name);
	cfg.name = name;
	err = journal_open(dir, &cfg, &du->j, why, sizeof(why));
	if (err) {
		log_warn("bus %u:%s: queue '%s': journal %s: %s", b->owner_uid,
			 b->name, dq->name, dir, why);
		free(du);
		return err;
	}
	snprintf(du->dir, sizeof(du->dir), "%s", dir);
	du->qid = qid;
	du->uid = b->owner_uid;
	dur_disk_charge(du);
	dq->dur = du;
	dq->sync = req->sync;
	dq->sync_interval_ns = req->sync == SHMBUS_JSYNC_BATCH
			       ? (req->sync_interval_ns ? req->sync_interval_ns
							: DEF_SYNC_INTERVAL_NS)
			       : 0;
	return 0;
}

static void dur_close(struct dqueue *dq)
{
	struct dur *du = dq->dur;

	if (!du)
		return;
	quota_release(du->uid, Q_DISK, du->charged);
	journal_close(du->j);
	free(du->backlog);
	free(du->pend);
	free(du);
	dq->dur = NULL;
}

/* The intake of @qid: its eventfd seat is ours. */
void dur_intake_link(struct dbus *b, uint32_t qid, uint32_t iq)
{
	struct dqueue *dq = &b->queues[qid], *di = &b->queues[iq];

	dq->intake = iq + 1;
	di->intake = qid + 1;
	di->sync = dq->sync;
	if (di->seat_fds && di->seat_fds[0] < 0 && efd >= 0) {
		di->seat_fds[0] = fcntl(efd, F_DUPFD_CLOEXEC, 3);
		if (di->seat_fds[0] >= 0) {
			di->seat_epoch++;
			/* [SEATFD] before any producer is told of the seat
			 * (lib wake.c claim_seats) */
			WRITE_ONCE(b->arena.queues[iq].seat_epoch,
				   di->seat_epoch);
		}
	}
	dqueue_republish(b, qid);
	dqueue_republish(b, iq);
	dur_stats_publish(b, qid);
	/* asleep on it from the start: a producer's first message wakes
	 * us; what is there already is drained at once */
	if (intake_arm(b, qid)) {
		static const uint64_t one = 1;

		(void)!write(efd, &one, sizeof(one));
	}
}

/* Is @req asking for what persistent queue @dq's queue.conf says? */
static bool same_declare(const struct dqueue *dq,
			 const struct sbc_queue_declare *req)
{
	struct sbc_queue_declare have, want = *req;
	struct sbc_subscribe sub;
	bool is_sub;

	if (statedir_queue_load(dq->dur->dir, dq->name, &have, &sub, &is_sub) ||
	    is_sub)
		return false;
	want.sync_interval_ns = want.sync == SHMBUS_JSYNC_BATCH &&
				!want.sync_interval_ns ? DEF_SYNC_INTERVAL_NS
						       : want.sync_interval_ns;
	have.sync_interval_ns = have.sync == SHMBUS_JSYNC_BATCH &&
				!have.sync_interval_ns ? DEF_SYNC_INTERVAL_NS
						       : have.sync_interval_ns;
	return !memcmp(&have, &want, sizeof(have));
}

/* The sync settings of a declare or subscribe: 0, or -EINVAL with why. */
static int sync_check(uint32_t sync, uint64_t interval, struct request *r)
{
	if (sync > SHMBUS_JSYNC_NEVER ||
	    (sync != SHMBUS_JSYNC_BATCH && interval) ||
	    (interval && (interval < 100 * NSEC_PER_USEC ||
			  interval > NSEC_PER_SEC))) {
		req_reason(r, "sync must be always, batch (interval 100 us .. "
			   "1 s) or never");
		return -EINVAL;
	}
	return 0;
}

/* What a persistent declare may ask for: 0, or -errno with the reason. */
static int declare_check(struct dbus *b, const struct sbc_queue_declare *req,
			 struct request *r)
{
	const char *why = NULL;

	if (req->flags & (SBC_QUEUE_TOPIC | SBC_QUEUE_PRIVATE))
		why = "a topic or a private queue cannot be durable";
	else if (req->priorities > 1)
		why = "a durable queue has one priority level";
	else if (req->overflow == SHMBUS_OVERFLOW_DROP_OLDEST)
		why = "a durable queue does not drop its oldest message "
		      "(overflow block or reject)";
	if (why) {
		req_reason(r, "%s", why);
		return -EINVAL;
	}
	if (sync_check(req->sync, req->sync_interval_ns, r))
		return -EINVAL;
	if (req->dlq[0]) {
		int d = dqueue_find(b, req->dlq);

		if (d >= 0 && !b->queues[d].dur) {
			req_reason(r, "the dead-letter queue of a durable queue "
				   "must be durable ('%s' is not)", req->dlq);
			return -EINVAL;
		}
	}
	return 0;
}

/*
 * Make queue or subscription @qid persistent: its journal opened (what an
 * earlier life of it left there comes back into it), its intake made, its
 * queue.conf written last (a daemon that restarts makes again only what
 * was made whole). @req is its declare (for a subscription, made up from
 * @sub, which queue.conf also keeps).
 */
static int persist(struct dbus *b, const struct peer *p, uint32_t qid,
		   const struct sbc_queue_declare *req,
		   const struct sbc_subscribe *sub, struct request *r)
{
	struct sbc_queue_declare iq = { 0 };
	struct sbc_queue_declare_reply irep;
	struct dqueue *dq = &b->queues[qid];
	struct load_ctx lc;
	char dir[PATH_MAX];
	int err;

	if (!statedir_ready()) {
		req_reason(r, "the daemon keeps no durable queues: %s",
			   statedir_why());
		return -EOPNOTSUPP;
	}
	err = statedir_queue(b, req->name, dir, sizeof(dir));
	if (!err)
		err = statedir_mkdirs(dir);
	if (!err)
		err = statedir_bus_save(b);
	if (err) {
		log_warn("bus %u:%s: queue '%s': state directory: %s",
			 b->owner_uid, b->name, req->name, strerror(-err));
		req_reason(r, "cannot write the queue's state: %s",
			   strerror(-err));
		return err;
	}
	err = dur_open(b, qid, dir, req);
	if (err) {
		req_reason(r, "cannot open the queue's journal (see the "
			   "daemon's log)");
		return err;
	}
	memcpy(iq.name, req->name, sizeof(iq.name));
	iq.max_len = req->max_len;
	iq.msg_size = req->msg_size ? req->msg_size : dq->msg_size;
	/* its largest message with the most attributes is one record */
	if ((uint64_t)iq.msg_size + SHMBUS_ATTR_BYTES + 128 > JOURNAL_REC_MAX) {
		dur_close(dq);
		req_reason(r, "a durable queue's messages are at most %u bytes",
			   JOURNAL_REC_MAX - SHMBUS_ATTR_BYTES - 128);
		return -EMSGSIZE;
	}
	iq.max_consumers = 1;		/* the daemon */
	iq.flags = req->flags & SBC_QUEUE_CHECKSUM;
	iq.ttl_ns = req->ttl_ns;	/* producers stamp the expiry */
	iq.dedup_window_ns = req->dedup_window_ns;	/* producers' table */
	iq.overflow = req->overflow;
	err = queue_create(b, p, &iq, &irep, DQ_INTAKE);
	if (err) {
		dur_close(dq);
		req_reason(r, "no room for the queue's intake (a durable "
			   "queue takes two directory entries and twice its "
			   "ring)");
		return err;
	}
	err = statedir_queue_save(dir, req, sub);
	if (err) {
		dqueue_delete(b, (int)irep.qid);
		dur_close(dq);
		log_warn("bus %u:%s: queue '%s': state directory: %s",
			 b->owner_uid, b->name, req->name, strerror(-err));
		req_reason(r, "cannot write the queue's state: %s",
			   strerror(-err));
		return err;
	}
	dur_intake_link(b, qid, irep.qid);
	dq->dedup_window_ns = req->dedup_window_ns;
	/* a journal left by an earlier life of this queue comes back */
	recover_load(b, qid, &lc);
	recover_keys(b, qid);
	if (lc.loaded || lc.unloaded)
		log_info("bus %u:%s: '%s': %u messages back from its journal%s",
			 b->owner_uid, b->name, req->name, lc.loaded,
			 lc.unloaded ? " (more wait on disk for room)" : "");
	dur_stats_publish(b, qid);
	log_info("bus %u:%s: '%s' is durable (sync %s), journal %s",
		 b->owner_uid, b->name, req->name,
		 req->sync == SHMBUS_JSYNC_ALWAYS ? "always" :
		 req->sync == SHMBUS_JSYNC_BATCH ? "batch" : "never", dir);
	return 0;
}

int durable_subscribe(struct dbus *b, const struct peer *p, uint32_t qid,
		      const struct sbc_subscribe *req, struct request *r)
{
	const struct dqueue *dq = &b->queues[qid];
	struct sbc_queue_declare d = { 0 };
	int err = sync_check(req->sync, req->sync_interval_ns, r);

	if (err)
		return err;
	memcpy(d.name, dq->name, sizeof(d.name));
	d.max_len = dq->max_len;
	d.msg_size = dq->msg_size;
	d.max_consumers = dq->nr_seats;
	d.lease_ns = dq->lease_ns;
	d.sync = req->sync;
	d.sync_interval_ns = req->sync_interval_ns;
	return persist(b, p, qid, &d, req, r);
}

/* A durable queue is gone: its intake, and on disk its journal. */
static void unpersist(struct dbus *b, uint32_t qid, bool files)
{
	struct dqueue *dq = &b->queues[qid];
	char dir[PATH_MAX];

	if (dq->intake && b->queues[dq->intake - 1].live &&
	    b->queues[dq->intake - 1].kind == DQ_INTAKE)
		dqueue_delete(b, (int)dq->intake - 1);
	dq->intake = 0;
	if (dq->dur) {
		/* the queue's messages are freed with it: those waiting for
		 * room too */
		if (files)
			intake_backlog_drop(b, qid);
		snprintf(dir, sizeof(dir), "%s", dq->dur->dir);
		dur_close(dq);
		if (files && journal_destroy(dir) == 0)
			log_info("bus %u:%s: queue '%s': journal removed",
				 b->owner_uid, b->name, dq->name);
	}
}

int durable_declare(struct dbus *b, const struct peer *p,
		    const struct sbc_queue_declare *req,
		    struct sbc_queue_declare_reply *rep, struct request *r)
{
	struct sbc_queue_declare q = *req;
	int id, err;

	err = declare_check(b, req, r);
	if (err)
		return err;
	id = dqueue_find(b, req->name);
	if (id >= 0) {
		const struct dqueue *dq = &b->queues[id];

		if (!dq->dur || dq->kind != DQ_QUEUE || !same_declare(dq, req)) {
			req_reason(r, dq->kind != DQ_QUEUE ?
				   "'%s' exists as a topic or subscription" :
				   !dq->dur ? "queue '%s' exists and is not "
				   "durable" : "durable queue '%s' exists with "
				   "other settings (its sync policy or "
				   "interval, or its delivery settings)",
				   req->name);
			return -EEXIST;
		}
		rep->qid = (uint32_t)id;
		rep->gen = dq->gen;
		rep->created = 0;
		return 0;
	}
	if (!statedir_ready()) {
		req_reason(r, "the daemon keeps no durable queues: %s",
			   statedir_why());
		return -EOPNOTSUPP;
	}
	/* the queue consumers see: everything a declare gives, but the
	 * dedup table, which is the intake's (its producers') */
	q.flags &= ~SBC_QUEUE_DURABLE;
	q.dedup_window_ns = 0;
	q.sync = 0;
	q.sync_interval_ns = 0;
	err = queue_create(b, p, &q, rep, DQ_QUEUE);
	if (err)
		return err;
	err = persist(b, p, rep->qid, req, NULL, r);
	if (err) {
		dqueue_delete(b, (int)rep->qid);
		return err;
	}
	return 0;
}

void durable_deleted(struct dbus *b, uint32_t qid)
{
	if ((b->queues[qid].kind != DQ_QUEUE &&
	     b->queues[qid].kind != DQ_SUB) ||
	    (!b->queues[qid].dur && !b->queues[qid].intake))
		return;
	unpersist(b, qid, true);
	/* the last one: the bus's directory goes too, or a start would
	 * make the bus again from its bus.conf, with nothing in it */
	for (uint32_t i = 0; i < b->arena.max_queues; i++)
		if (b->queues[i].dur)
			return;
	statedir_bus_remove(b);
}

/* ---- dead-lettering out of a persistent queue ---------------------------- */

int durable_dead_letter(struct dbus *b, uint32_t qid, uint32_t dlq,
			uint32_t ref)
{
	struct dqueue *dq = &b->queues[qid];
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	int64_t now = now_ns(), rt = realtime_ns();
	struct dur *dd;
	struct jmsg m;
	int err;

	if (!c || dlq == UINT32_MAX || !(dd = b->queues[dlq].dur))
		return 0;
	if (!chunk_jmsg(b, ref, c, &m, now, rt))
		return -EBADMSG;
	/* in the DLQ's journal, on stable storage, before the queue's
	 * record of it goes: a crash in between leaves it in both, never
	 * in neither. Dead-lettering is rare: one sync here is cheap. */
	err = journal_pub(dd->j, &m);
	if (!err)
		err = journal_flush(dd->j);
	if (!err) {
		struct jsync s;
		struct jent *e;

		journal_sync_begin(dd->j, &s);
		err = journal_sync_run(&s);
		journal_sync_end(dd->j, &s, err);
		e = journal_find(dd->j, m.id);
		if (e)
			e->user = (uint64_t)ref + 1;
	}
	if (err)
		log_warn("bus %u:%s: dead-letter queue '%s': journal: %s",
			 b->owner_uid, b->name, b->queues[dlq].name,
			 strerror(-err));
	(void)dq;
	return err;
}

void durable_left(struct dbus *b, uint32_t qid, uint32_t ref, uint32_t reason)
{
	struct dqueue *dq = &b->queues[qid];
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);

	if (!dq->dur || !c)
		return;
	journal_settle(dq->dur->j, READ_ONCE(c->id), reason);
	if (journal_flush(dq->dur->j) == 0 && !dq->dur->dirty_since)
		dq->dur->dirty_since = now_ns();
}

/* ---- the event loop's part ----------------------------------------------- */

/* Persistent queue @du of some bus, by its running sync's token. */
static struct dur *dur_by_token(struct daemon *d, uint64_t token,
				struct dbus **bp, uint32_t *qidp)
{
	for (struct dbus *b = d->buses; b; b = b->next)
		for (uint32_t i = 0; i < b->arena.max_queues; i++)
			if (b->queues[i].dur &&
			    b->queues[i].dur->sync_token == token) {
				*bp = b;
				*qidp = i;
				return b->queues[i].dur;
			}
	return NULL;
}

/* A sync the thread finished (syncer_collect()): confirm what it covered. */
static void sync_done(void *ctx, uint64_t token, struct jsync *js, int err,
		      int64_t ns)
{
	struct dbus *b = NULL;
	uint32_t qid = 0;
	struct dur *du = dur_by_token(ctx, token, &b, &qid);

	if (!du) {
		jsync_drop(js);		/* its queue went meanwhile */
		return;
	}
	probe_journal_sync(b->arena.bus_id, qid,
			   js->pos - MIN(js->pos, journal_synced(du->j)), ns,
			   err);
	journal_sync_end(du->j, js, err);
	du->sync_token = 0;
	du->syncs++;
	sync_histogram(b, ns);
	if (err) {
		/* what it covered may not be on disk: whoever waits for it
		 * hears so (their messages stay queued) */
		log_err("bus %u:%s: journal %s: fdatasync: %s", b->owner_uid,
			b->name, du->dir, strerror(-err));
		/* ... and so do those who wait for records written while it
		 * ran: after a failed sync nothing in the journal is durable
		 * any more (journal_sync_end()), none will be confirmed */
		for (size_t i = 0; i < du->npend; i++)
			du->pend[i].err = err;
		pend_flush(b, du, UINT64_MAX);
	} else {
		pend_flush(b, du, journal_synced(du->j));
		/* a sync covers at most JSYNC_FDS segments: the rest, and
		 * what was written meanwhile, wants the next one now, not
		 * at the next write */
		if (journal_synced(du->j) < journal_written(du->j) &&
		    b->queues[qid].sync != SHMBUS_JSYNC_NEVER &&
		    !du->dirty_since)
			du->dirty_since = now_ns();
	}
	/* what was written while it ran: group commit goes on at once, not
	 * at the next tick */
	dur_sync_maybe(b, du->qid, now_ns());
}

int durable_fd(void)
{
	return efd;
}

void durable_run(struct daemon *d)
{
	static const uint64_t one = 1;
	uint64_t v;

	if (read(efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("durable eventfd: %s", strerror(errno));
	syncer_collect(sync_done, d);
	if (intake_drain_all(d) && write(efd, &one, sizeof(one)) < 0)
		server_want_tick();
}

/* A segment goes only once the records that settled its messages are
 * synced, and under sync never nothing else syncs: while an old segment
 * is there and something is unsynced, one sync per gc period (on the
 * sync thread), or such a journal grows for as long as it is written. */
static void gc_sync(struct dur *du, int64_t now)
{
	struct journal_stats st;

	journal_stats(du->j, &st);
	if (st.segments < 2 || du->sync_token ||
	    journal_synced(du->j) >= journal_written(du->j))
		return;
	if (!du->dirty_since)
		du->dirty_since = now;
	dur_sync_submit(du);
}

int64_t durable_tick(struct dbus *b, int64_t now)
{
	int64_t next = INT64_MAX;

	for (uint32_t qid = 0; qid < b->arena.max_queues; qid++) {
		struct dqueue *dq = &b->queues[qid];
		struct dur *du = dq->dur;
		struct journal_stats st;
		uint64_t w;

		if (!dq->live || !du)
			continue;
		/* a wake-up we missed (a producer with an old eventfd after
		 * a restart), or an intake left full while the queue was,
		 * costs at most one tick */
		if (dq->intake) {
			intake_backlog_flush(b, qid);
			if (intake_arm(b, qid))
				(void)!write(efd, &(uint64_t){ 1 },
					     sizeof(uint64_t));
		}
		/* a full queue tells nobody when it has room again: while
		 * one holds messages back, look every millisecond */
		if (du->nback || du->blocked)
			next = MIN(next, now + BLOCKED_RETRY_NS);
		w = journal_written(du->j);
		poll_queue(b, qid, now);
		if (journal_flush(du->j) == 0 && journal_written(du->j) != w &&
		    dq->sync != SHMBUS_JSYNC_NEVER && !du->dirty_since)
			du->dirty_since = now;
		if (du->dirty_since && !du->sync_token) {
			int64_t due = dur_sync_when(dq, du);

			if (now >= due)
				dur_sync_submit(du);
			else
				next = MIN(next, due);
		}
		if (now >= du->gc_next) {
			if (du->unloaded) {
				struct load_ctx lc;

				recover_load(b, qid, &lc);
			}
			journal_gc(du->j, (uint64_t)realtime_ns(), GC_BUDGET);
			if (dq->sync == SHMBUS_JSYNC_NEVER)
				gc_sync(du, now);
			du->gc_next = now + GC_PERIOD_NS;
			dur_stats_publish(b, qid);
		}
		journal_stats(du->j, &st);
		if (st.live || du->npend)
			next = MIN(next, du->gc_next);
	}
	return next;
}

void durable_room(struct dbus *b, int64_t now)
{
	for (uint32_t qid = 0; qid < b->arena.max_queues; qid++) {
		struct dur *du = b->queues[qid].dur;

		if (b->queues[qid].live && du && du->unloaded)
			du->gc_next = MIN(du->gc_next, now);
	}
}

/* ---- start and end ---------------------------------------------------------- */

int durable_setup(const char *dir, uint64_t seg_bytes)
{
	int err;

	segment_bytes = seg_bytes;
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0)
		return -errno;
	syncer_init(efd);
	if (!dir)
		return 0;
	err = statedir_set(dir);
	if (err)
		return err;
	log_info("state directory %s (durable queues)", dir);
	return 0;
}

/* The daemon stops: what is written is synced, its waiters confirmed. */
void durable_bus_free(struct dbus *b)
{
	for (uint32_t i = 0; i < b->arena.max_queues; i++) {
		struct dur *du = b->queues[i].dur;
		struct jsync s;

		if (!du)
			continue;
		if (journal_flush(du->j) == 0) {
			journal_sync_begin(du->j, &s);
			journal_sync_end(du->j, &s, journal_sync_run(&s));
			pend_flush(b, du, journal_synced(du->j));
		}
		dur_close(&b->queues[i]);
	}
}

void durable_fini(void)
{
	syncer_fini();
	statedir_fini();
	if (efd >= 0)
		close(efd);
	efd = -1;
}
