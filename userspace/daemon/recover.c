// SPDX-License-Identifier: MIT
/*
 * recover.c - durable queues come back. After a reboot (no process holds
 * the bus any more) the daemon makes the bus again from its bus.conf, each
 * durable queue from its queue.conf, and loads each queue's live messages
 * from its journal, in order, into chunks of the new arena; messages that
 * do not fit yet wait on disk and are loaded as chunks free. A bus a
 * restarted daemon adopts (processes held it) keeps its messages in its
 * arena: the journals are reattached, each live entry matched to its chunk
 * again, and what was acked while no daemon ran is settled.
 */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmbusd.h"
#include "pool.h"

/* ---- loading: messages from the journal into the arena ------------------ */

/* Make message @m (entry @e) a chunk of queue @qid again: into its ring,
 * or on a timer until it is due. 0, -ENOMEM (no chunk: try later),
 * -EMSGSIZE (it fits no pool of this bus). */
static int load_one(struct load_ctx *lc, const struct jent *e,
		    const struct jmsg *m)
{
	struct dbus *b = lc->b;
	const struct arena *a = &b->arena;
	const struct dqueue *dq = &b->queues[lc->qid];
	uint64_t size = ALIGN_UP((uint64_t)m->len, 8) + m->attr_len;
	struct shmbus_chunk *c;
	struct jent *me;
	uint64_t due;
	uint32_t ref;
	int pi;

	if (m->len > dq->msg_size || m->attr_len > SHMBUS_ATTR_BYTES)
		return -EMSGSIZE;
	pi = pool_for_size(a, size);
	if (pi < 0)
		return pi;
	for (; pi < (int)a->nr_pools; pi++)
		if (pool_alloc(a, NULL, pi, (SHMBUS_CHUNK_TIMED << 16) |
			       SHMBUS_OWNER_DAEMON, &ref) == 0)
			break;
	if (pi == (int)a->nr_pools)
		return -ENOMEM;
	c = chunk_at(a, ref);
	memcpy(chunk_payload(c), m->payload, m->len);
	if (m->attr_len)
		memcpy(chunk_payload(c) + ALIGN_UP(m->len, 8), m->attrs,
		       m->attr_len);
	c->len = m->len;
	c->attr_len = (uint16_t)m->attr_len;
	c->flags = 0;
	c->id = m->id;
	c->ts_pub = to_mono(m->pub_rt, lc->now, lc->rt);
	c->corr_id = m->corr_id;
	c->reply_to = 0;	/* its requester's reply queue is gone */
	c->reply_gen = 0;
	c->delivery_count = m->delivery_count;
	c->expires_ns = to_mono(m->expires_rt, lc->now, lc->rt);
	c->not_before_ns = 0;
	c->refcnt = 0;
	c->dl_reason = m->dl_reason;
	c->dl_src_qid = 0;	/* queue ids are this arena's */
	c->qid = 0;		/* so is its topic's */
	c->dl_count = m->dl_count;
	c->dedup_key = m->dedup_key;
	c->prio = 0;
	if ((m->mflags & JM_CHECKSUM) || dq->checksum) {
		c->flags = SHMBUS_CF_CHECKSUM;
		c->checksum = chunk_checksum(c, m->len, m->attr_len);
	}
	me = journal_find(dq->dur->j, e->id);
	if (me)
		me->user = (uint64_t)ref + 1;
	lc->max_id = MAX(lc->max_id, m->id);
	due = to_mono(m->due_rt, lc->now, lc->rt);
	if (due > (uint64_t)lc->now)
		timer_add(b, lc->qid, dq->gen, ref, (int64_t)due);
	else
		intake_put(b, lc->qid, ref);	/* in order, room or not */
	return 0;
}

static int load_cb(void *arg, const struct jent *e, const struct jmsg *m)
{
	struct load_ctx *lc = arg;
	int err;

	if (e->user)
		return 0;		/* in the arena already */
	if (lc->unloaded) {
		lc->unloaded++;		/* keep the order: none after a miss */
		return 0;
	}
	err = load_one(lc, e, m);
	if (err == -ENOMEM) {
		lc->unloaded++;
		return 0;
	}
	if (err) {
		lc->bad++;
		journal_settle(lc->b->queues[lc->qid].dur->j, e->id,
			       SHMBUS_DLR_NONE);
		return 0;
	}
	lc->loaded++;
	return 0;
}

/* Load what of @qid's journal is not in the arena yet, in queue order,
 * while chunks last. */
void recover_load(struct dbus *b, uint32_t qid, struct load_ctx *lc)
{
	struct dur *du = b->queues[qid].dur;

	memset(lc, 0, sizeof(*lc));
	lc->b = b;
	lc->qid = qid;
	lc->now = now_ns();
	lc->rt = realtime_ns();
	journal_each_unplaced(du->j, load_cb, lc);
	du->unloaded = lc->unloaded;
	/* ids continue above every live one, loaded or still on disk: the
	 * id is the journal's key, and a PUB of a live id replaces it */
	for (struct jent *e = journal_first(du->j); e; e = journal_next(du->j, e))
		lc->max_id = MAX(lc->max_id, e->id);
	if (lc->max_id >= READ_ONCE(b->arena.sb->id_next))
		WRITE_ONCE(b->arena.sb->id_next, lc->max_id + 1);
	if (lc->bad)
		log_warn("bus %u:%s: queue '%s': %u journaled messages do "
			 "not fit this bus's pools or the queue's msg_size; "
			 "settled", b->owner_uid, b->name, b->queues[qid].name,
			 lc->bad);
	journal_flush(du->j);
}

/* The dedup keys of @qid's journal still in their window, back into the
 * intake's table (the producers' table), as seen. */
struct keys_ctx {
	struct dbus *b;
	const struct dqueue *iq;
	int64_t now, rt;
	unsigned n;
};

static void key_cb(void *arg, uint64_t key, uint64_t expires_rt)
{
	struct keys_ctx *kc = arg;
	const struct dqueue *iq = kc->iq;
	struct shmbus_dedup *t = unit_addr(kc->b, iq->dedup_first);
	uint64_t exp = to_mono(expires_rt, kc->now, kc->rt);

	if (!key || exp <= (uint64_t)kc->now)
		return;
	for (uint32_t i = 0; i < SHMBUS_DEDUP_PROBE; i++) {
		struct shmbus_dedup *d = &t[(key + i) & (iq->dedup_cap - 1)];

		if (d->key && d->key != key)
			continue;
		d->key = key;
		d->expires = exp;
		kc->n++;
		return;
	}
}

void recover_keys(struct dbus *b, uint32_t qid)
{
	const struct dqueue *dq = &b->queues[qid];
	struct keys_ctx kc = { .b = b, .now = now_ns(), .rt = realtime_ns() };

	if (!dq->intake || !b->queues[dq->intake - 1].dedup_cap)
		return;
	kc.iq = &b->queues[dq->intake - 1];
	journal_each_key(dq->dur->j, (uint64_t)kc.rt, key_cb, &kc);
	if (kc.n)
		log_info("bus %u:%s: queue '%s': %u dedup keys restored",
			 b->owner_uid, b->name, dq->name, kc.n);
}

/* ---- a bus comes back ----------------------------------------------------- */

/* The intake (DQ_INTAKE) of queue @name on @b, or -ENOENT. */
static int intake_find(const struct dbus *b, const char *name)
{
	for (uint32_t i = 0; i < b->arena.max_queues; i++)
		if (b->queues[i].live && b->queues[i].kind == DQ_INTAKE &&
		    !strncmp(b->queues[i].name, name, SHMBUS_NAME_MAX))
			return (int)i;
	return -ENOENT;
}

/* Adopted bus @b's chunks, matched to the live entries of @qid's journal
 * (by id); an entry whose message no chunk holds any more left while no
 * daemon ran: settled. */
static void adopt_match(struct dbus *b, uint32_t qid)
{
	const struct arena *a = &b->arena;
	struct dur *du = b->queues[qid].dur;
	unsigned gone = 0;
	struct jent *e, *n;

	for (unsigned p = 0; p < a->nr_pools; p++) {
		for (uint32_t i = 0; i < a->pool[p].nr_chunks; i++) {
			uint32_t ref = SHMBUS_REF(p, i);
			struct shmbus_chunk *c = chunk_at(a, ref);

			if (SHMBUS_OWNER_STATE(READ_ONCE(c->owner)) ==
			    SHMBUS_CHUNK_FREE)
				continue;
			e = journal_find(du->j, READ_ONCE(c->id));
			if (e && !e->user)
				e->user = (uint64_t)ref + 1;
		}
	}
	for (e = journal_first(du->j); e; e = n) {
		n = journal_next(du->j, e);
		if (!e->user) {
			journal_settle(du->j, e->id, SHMBUS_DLR_NONE);
			gone++;
		}
	}
	if (gone)
		log_info("bus %u:%s: queue '%s': %u journaled messages were "
			 "acked while no daemon ran", b->owner_uid, b->name,
			 b->queues[qid].name, gone);
}

/*
 * Adopted bus @b: its persistent queues get their journals back. What was
 * published into an intake since the dead daemon's last write is
 * journaled now; then every producer of an intake is confirmed up to the
 * last id it had taken when we looked (its messages are in the intake,
 * journaled now, or were journaled by the dead daemon, and the sync we
 * start covers both).
 */
void durable_adopted(struct dbus *b)
{
	char dir[PATH_MAX], qdir[PATH_MAX + 512];
	struct dirent *de;
	DIR *dd;

	if (statedir_bus(b, dir, sizeof(dir)) ||
	    strlen(dir) + sizeof("/queues") > sizeof(dir))
		return;
	strcat(dir, "/queues");
	dd = opendir(dir);
	if (!dd)
		return;		/* no persistent queues */
	if (!statedir_ready()) {
		log_err("bus %u:%s: its durable queues' journals are in %s, "
			"which this daemon cannot use (%s): they go on in "
			"memory only", b->owner_uid, b->name, dir,
			statedir_why());
		closedir(dd);
		return;
	}
	while ((de = readdir(dd))) {
		struct sbc_queue_declare req;
		struct sbc_subscribe sub;
		bool is_sub;
		int qid, iq;

		if (!statedir_entry_ok(de->d_name) || de->d_type != DT_DIR)
			continue;
		snprintf(qdir, sizeof(qdir), "%s/%s", dir, de->d_name);
		if (statedir_queue_load(qdir, de->d_name, &req, &sub, &is_sub))
			continue;
		qid = dqueue_find(b, de->d_name);
		iq = intake_find(b, de->d_name);
		if (qid < 0 || iq < 0 || b->queues[qid].kind !=
		    (is_sub ? DQ_SUB : DQ_QUEUE)) {
			log_warn("bus %u:%s: durable queue '%s' (journal %s) "
				 "is not in the adopted arena as a queue with "
				 "its intake; its journal is kept and comes "
				 "back when the queue is declared again",
				 b->owner_uid, b->name, de->d_name, qdir);
			continue;
		}
		if (dur_open(b, (uint32_t)qid, qdir, &req))
			continue;
		b->queues[qid].dedup_window_ns = req.dedup_window_ns;
		dur_intake_link(b, (uint32_t)qid, (uint32_t)iq);
		adopt_match(b, (uint32_t)qid);
		intake_confirm_all(b, (uint32_t)qid);
		if (is_sub)
			fanout_refresh(b);	/* publishers copy into it */
		log_info("bus %u:%s: durable %s '%s': journal reattached",
			 b->owner_uid, b->name, is_sub ? "subscription" : "queue",
			 de->d_name);
	}
	closedir(dd);
}

/*
 * Make bus @name of @uid again from its bus.conf and its queues' journals
 * (the daemon, and every process that mapped it, went away: a reboot).
 */
static int recover_bus(struct daemon *d, uid_t uid, const char *name,
		       struct dbus **out)
{
	char dir[PATH_MAX], qdir[PATH_MAX + 512];
	struct sbc_queue_declare *qs = NULL;
	struct sbc_subscribe *subs = NULL;
	struct sbc_bus_open req = { 0 };
	struct peer p = { .pid = getpid(), .uid = uid };
	struct request r = { 0 };
	size_t nq = 0, cap = 0;
	unsigned done = 0, msgs = 0;
	int64_t t0 = now_ns();
	struct dbus *b;
	struct dirent *de;
	DIR *dd;
	int err;

	if (!statedir_name_ok(name) ||
	    statedir_bus_of(uid, name, dir, sizeof(dir)))
		return -EINVAL;
	memcpy(req.name, name, strlen(name));
	req.flags = SBC_OPEN_CREATE | SBC_OPEN_EXCL;
	err = statedir_bus_load(dir, &req, &p.gid);
	if (err) {
		if (err != -ENOENT)
			log_err("state %s/bus.conf is malformed: bus not "
				"recovered", dir);
		return err;
	}
	p.groups = p.groups_inline;
	err = bus_create(d, &req, &p, &b, &r);
	if (err) {
		log_err("bus %u:%s: not recovered: %s%s%s", (unsigned)uid, name,
			strerror(-err), r.reason[0] ? ": " : "", r.reason);
		return err;
	}
	/* the queues, each after its dead-letter queue */
	snprintf(qdir, sizeof(qdir), "%s/queues", dir);
	dd = opendir(qdir);
	while (dd && (de = readdir(dd))) {
		bool is_sub;

		if (!statedir_entry_ok(de->d_name) || de->d_type != DT_DIR)
			continue;
		if (nq == cap) {
			struct sbc_queue_declare *n;
			struct sbc_subscribe *ns;

			cap = cap ? 2 * cap : 16;
			n = realloc(qs, cap * sizeof(*qs));
			if (n)
				qs = n;
			ns = realloc(subs, cap * sizeof(*subs));
			if (ns)
				subs = ns;
			if (!n || !ns)
				break;
		}
		snprintf(qdir, sizeof(qdir), "%s/queues/%s", dir, de->d_name);
		if (statedir_queue_load(qdir, de->d_name, &qs[nq], &subs[nq],
					&is_sub)) {
			log_err("state %s/queue.conf is malformed or missing: "
				"not recovered (its journal is kept)", qdir);
			continue;
		}
		if (!is_sub)
			subs[nq].pattern[0] = '\0';
		nq++;
	}
	if (dd)
		closedir(dd);
	for (bool progress = true; progress && done < nq;) {
		progress = false;
		for (size_t i = 0; i < nq; i++) {
			struct sbc_queue_declare_reply rep;
			struct sbc_queue_declare *q = &qs[i];
			struct journal_stats st;
			int id;

			if (!q->name[0] || (q->dlq[0] &&
					    dqueue_find(b, q->dlq) < 0))
				continue;
			memset(&r, 0, sizeof(r));
			if (subs[i].pattern[0]) {
				/* a persistent subscription, no consumer yet */
				id = sub_create(b, &p, &subs[i], q->name, &r);
				err = id < 0 ? id : 0;
				rep.qid = (uint32_t)id;
			} else {
				err = durable_declare(b, &p, q, &rep, &r);
			}
			if (err) {
				log_err("bus %u:%s: queue '%s' not recovered: "
					"%s%s%s", (unsigned)uid, name, q->name,
					strerror(-err), r.reason[0] ? ": " : "",
					r.reason);
			} else {
				id = (int)rep.qid;
				journal_stats(b->queues[id].dur->j, &st);
				msgs += (unsigned)st.live;
			}
			q->name[0] = '\0';
			done++;
			progress = true;
		}
	}
	for (size_t i = 0; i < nq; i++)
		if (qs[i].name[0])
			log_err("bus %u:%s: queue '%s' not recovered: its "
				"dead-letter queue '%s' did not come back",
				(unsigned)uid, name, qs[i].name, qs[i].dlq);
	free(qs);
	free(subs);
	WRITE_ONCE(b->arena.sb->recovery_ns, (uint64_t)(now_ns() - t0));
	WRITE_ONCE(b->arena.sb->recovered, msgs);
	log_info("bus %u:%s recovered from %s: %u durable queues, %u messages, "
		 "%.1f ms", (unsigned)uid, name, dir, done, msgs,
		 (double)(now_ns() - t0) / 1e6);
	*out = b;
	return 0;
}

int durable_bus_open(struct daemon *d, uid_t uid, const char *name,
		     struct dbus **out)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];
	struct stat st;

	if (!statedir_name_ok(name) ||
	    statedir_bus_of(uid, name, dir, sizeof(dir)))
		return 0;
	snprintf(path, sizeof(path), "%s/bus.conf", dir);
	if (stat(path, &st) < 0 || !statedir_ready())
		return 0;
	return recover_bus(d, uid, name, out) ? 0 : 1;
}

void durable_recover(struct daemon *d)
{
	const char *state = statedir_path();
	struct dirent *ue;
	DIR *sd;

	if (!state || !(sd = opendir(state)))
		return;
	if (!statedir_ready()) {
		closedir(sd);
		return;
	}
	while ((ue = readdir(sd))) {
		char udir[PATH_MAX + 16], *end;
		unsigned long uid = strtoul(ue->d_name, &end, 10);
		struct dirent *be;
		DIR *ud;

		if (*end || end == ue->d_name || uid > UINT32_MAX - 1)
			continue;
		snprintf(udir, sizeof(udir), "%s/%s", state, ue->d_name);
		if (!(ud = opendir(udir)))
			continue;
		while ((be = readdir(ud))) {
			struct dbus *b;

			if (!statedir_name_ok(be->d_name) || be->d_type != DT_DIR ||
			    bus_find(d, (uid_t)uid, be->d_name))
				continue;	/* adopted: journals reattached */
			if (adopt_pending((uid_t)uid, be->d_name)) {
				log_info("bus %lu:%s: held by running processes "
					 "that have not rejoined; recovered from "
					 "its journals if they never do", uid,
					 be->d_name);
				continue;
			}
			recover_bus(d, (uid_t)uid, be->d_name, &b);
		}
		closedir(ud);
	}
	closedir(sd);
}
