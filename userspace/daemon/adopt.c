// SPDX-License-Identifier: MIT
/*
 * adopt.c - taking over the buses of a daemon that died.
 *
 * A daemon killed -9 (or stopped) leaves every arena mapped by its
 * clients, with the data path running. The next daemon on the same socket
 * adopts each bus that still has members: from the systemd fd store
 * (fdstore.c), from the clients that hold it (a REJOIN hands the arena
 * back, dispatch.c), or pulled with pidfd_getfd() from a process that
 * maps it (adopt_scan(), at start, where the daemon may: root, or the
 * daemon's own uid).
 *
 * Trust. An arena is adopted only if it is one a daemon of this instance
 * made: a memfd owned by the daemon's uid (nobody else can make one that
 * is), sealed against shrinking and growing, whose memfd name - fixed at
 * creation, see arena_memfd_name() - names this instance (a hash of the
 * socket path) and the bus: owner, group, mode, bus id and name. Those
 * come from the name, never from the superblock, which every member can
 * write; so a member can neither plant a forged arena nor pass its bus
 * off as another one. The rest (queues, slots, timers) is read back from
 * the arena, which a member may have spoiled: every field is validated as
 * any opener validates it, a queue whose descriptor does not add up is
 * dropped (its handles get -EIDRM), and nothing read is used unchecked -
 * a member can spoil its own bus, as it always could, and nothing else.
 *
 * What is rebuilt, from where:
 *   queues      the directory: settings, ring, dedup and fan-out storage
 *               (placements checked in bounds and disjoint); the ring
 *               bitmap from the placements (units the old daemon's mirror
 *               marks beyond them were waiting for a grace period: freed
 *               after one); deleted queues not yet reclaimed are reclaimed
 *   slots       each slot's owner (pid, start time) is looked up: alive,
 *               its slots belong to a ghost connection (server.c) until
 *               it rejoins or exits; dead (killed while no daemon ran),
 *               they are released as after a kill -9 - leases requeued,
 *               chunks reclaimed; the pid alone is never trusted, the
 *               start time read through a pidfd must match
 *   held        TIMED chunks back on their timers with their due times,
 *               by their hold records (reclaim.c adopt_held())
 *   private     a private queue goes to its connection's ghost; with no
 *               live owner it is deleted
 *   quotas      the bus, its bytes, queues and seats are charged to the
 *               bus owner
 */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shmbusd.h"

#define MEMFD_PREFIX		"/memfd:shmbus:"
#define MEMFD_DELETED		" (deleted)"
#define MAX_DURATION_NS		(365LL * 24 * 3600 * NSEC_PER_SEC)
#define ARENA_SEALS		(F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* An arena's identity, as its memfd name says. */
struct ident {
	uint32_t instance, bus_id, mode;
	uid_t uid;
	gid_t gid;
	char name[SHMBUS_NAME_MAX];
};

/* Parse @link ("/memfd:shmbus:INST:UID:GID:MODE:BUSID:NAME (deleted)",
 * as arena_memfd_name() makes it): 0, or -EACCES. */
static int ident_parse(const char *link, struct ident *id)
{
	static const int base[5] = { 16, 10, 10, 8, 16 };
	unsigned long v[5];
	const char *p;
	size_t len;

	if (strncmp(link, MEMFD_PREFIX, strlen(MEMFD_PREFIX)))
		return -EACCES;
	p = link + strlen(MEMFD_PREFIX);
	for (int i = 0; i < 5; i++) {
		char *end;

		if (!isxdigit((unsigned char)*p))
			return -EACCES;
		errno = 0;
		v[i] = strtoul(p, &end, base[i]);
		if (end == p || *end != ':' || errno || v[i] > UINT32_MAX)
			return -EACCES;
		p = end + 1;
	}
	len = strlen(p);
	if (len > strlen(MEMFD_DELETED) &&
	    !strcmp(p + len - strlen(MEMFD_DELETED), MEMFD_DELETED))
		len -= strlen(MEMFD_DELETED);
	if (!len || len >= SHMBUS_NAME_MAX || v[3] > 0777 || !v[4])
		return -EACCES;
	memset(id->name, 0, sizeof(id->name));
	memcpy(id->name, p, len);
	if (proto_name_valid(id->name))
		return -EACCES;
	id->instance = (uint32_t)v[0];
	id->uid = (uid_t)v[1];
	id->gid = (gid_t)v[2];
	id->mode = (uint32_t)v[3];
	id->bus_id = (uint32_t)v[4];
	return 0;
}

int fd_link(pid_t pid, int fd, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	else
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, len - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

/*
 * Is the arena in @fd one this daemon's instance made? Its identity into
 * @id, 0; or -EACCES with @why.
 */
static int ident_check(const struct daemon *d, int fd, struct ident *id,
		       struct stat *st, char *why, size_t len)
{
	char link[PATH_MAX];
	int seals;

	if (fd_link(0, fd, link, sizeof(link)) || ident_parse(link, id)) {
		snprintf(why, len, "not an arena of a shmbus daemon (not a "
			 "memfd the daemon named)");
		return -EACCES;
	}
	if (id->instance != d->instance) {
		snprintf(why, len, "an arena of another shmbus daemon "
			 "(instance %08x; this one is %08x)", id->instance,
			 d->instance);
		return -EACCES;
	}
	/* the seals first: only a memfd (shmem) has them, and asking
	 * never waits on anyone, where fstat() of a file some server backs
	 * (FUSE) could */
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & ARENA_SEALS) != ARENA_SEALS) {
		snprintf(why, len, "not sealed against shrinking and growing");
		return -EACCES;
	}
	if (fstat(fd, st) || !S_ISREG(st->st_mode) ||
	    st->st_uid != geteuid()) {
		snprintf(why, len, "not an arena of this daemon's making (its "
			 "memfd belongs to uid %u)", (unsigned)st->st_uid);
		return -EACCES;
	}
	return 0;
}

/* ---- queues ---------------------------------------------------------- */

/* Is [off, off + bytes) a unit-aligned range of the ring area? Its first
 * unit into *@first and units into *@n. */
static bool ring_range(const struct dbus *b, uint64_t off, uint64_t bytes,
		       uint64_t *first, uint64_t *n)
{
	const struct arena *a = &b->arena;

	if (off < a->ring_off || (off - a->ring_off) % SHMBUS_RING_UNIT)
		return false;
	*first = (off - a->ring_off) / SHMBUS_RING_UNIT;
	*n = units_for(bytes);
	return *first <= a->ring_units && *n <= a->ring_units - *first;
}

static bool range_free(const struct dbus *b, uint64_t first, uint64_t n)
{
	for (uint64_t u = first; u < first + n; u++)
		if (units_used(b, u))
			return false;
	return true;
}

/* A subscription's name "PATTERN#GROUP" or "PATTERN#~N" into @dq
 * (pattern, group; the exclusive ones' sequence into b->excl_seq). */
static bool sub_name(struct dbus *b, struct dqueue *dq)
{
	char pat[SHMBUS_NAME_MAX] = { 0 }, grp[SHMBUS_NAME_MAX] = { 0 };
	const char *hash = memchr(dq->name, '#', SHMBUS_NAME_MAX);
	size_t plen;

	if (!hash || memchr(hash + 1, '#', strlen(hash + 1)))
		return false;
	plen = (size_t)(hash - dq->name);
	memcpy(pat, dq->name, plen);
	if (proto_pattern_valid(pat))
		return false;
	if (hash[1] == '~') {
		char *end;
		unsigned long long n = strtoull(hash + 2, &end, 10);

		if (*end || end == hash + 2)
			return false;
		b->excl_seq = MAX(b->excl_seq, (uint64_t)n);
	} else {
		snprintf(grp, sizeof(grp), "%s", hash + 1);
		if (proto_name_valid(grp))
			return false;
	}
	memcpy(dq->pattern, pat, sizeof(pat));
	memcpy(dq->group, grp, sizeof(grp));
	return true;
}

/*
 * Queue record @dq from arena descriptor @q (copied: a member may be
 * writing it), checked as a declare would check it, its storage marked
 * in the daemon's bitmap. NULL, or what is wrong with it.
 */
static const char *queue_adopt(struct dbus *b, uint32_t qid,
			       const struct shmbus_queue *q, struct dqueue *dq)
{
	const struct arena *a = &b->arena;
	uint64_t rf, rn, df = 0, dn = 0, ff = 0, fn = 0;
	uint32_t flags = q->flags;

	memcpy(dq->name, q->name, sizeof(dq->name));
	dq->name[SHMBUS_NAME_MAX - 1] = '\0';
	dq->kind = flags & SHMBUS_QF_TOPIC ? DQ_TOPIC :
		   flags & SHMBUS_QF_SUB ? DQ_SUB :
		   flags & SHMBUS_QF_INTAKE ? DQ_INTAKE : DQ_QUEUE;
	if (!!(flags & SHMBUS_QF_TOPIC) + !!(flags & SHMBUS_QF_SUB) +
	    !!(flags & SHMBUS_QF_INTAKE) > 1)
		return "of two kinds at once";
	if (dq->kind == DQ_SUB ? !sub_name(b, dq) : !!proto_name_valid(dq->name))
		return "its name is not valid";
	dq->cap = q->ring_cap;
	dq->max_len = q->max_len;
	dq->msg_size = q->msg_size;
	dq->nr_seats = q->nr_seats;
	dq->nr_prio = q->nr_prio;
	if (dq->cap < 2 || dq->cap > SHMBUS_RING_MAX_CAP ||
	    (dq->cap & (dq->cap - 1)) || !dq->max_len || dq->max_len > dq->cap ||
	    !dq->msg_size || dq->msg_size > a->pool[a->nr_pools - 1].payload_max ||
	    !dq->nr_seats || dq->nr_seats > SHMBUS_MAX_SEATS ||
	    !dq->nr_prio || dq->nr_prio > SHMBUS_MAX_PRIO)
		return "its shape is out of range";
	dq->lease_ns = q->lease_ns;
	dq->ttl_ns = q->ttl_ns;
	dq->backoff_init_ns = q->backoff_init_ns;
	dq->backoff_max_ns = q->backoff_max_ns;
	dq->backoff_mult_milli = q->backoff_mult_milli;
	dq->max_deliveries = q->max_deliveries;
	dq->overflow = q->overflow;
	if (dq->lease_ns < NSEC_PER_MSEC || dq->lease_ns > MAX_DURATION_NS ||
	    dq->ttl_ns > MAX_DURATION_NS ||
	    dq->backoff_max_ns > MAX_DURATION_NS ||
	    dq->backoff_max_ns < dq->backoff_init_ns ||
	    dq->backoff_mult_milli < 1000 || dq->backoff_mult_milli > 100000 ||
	    dq->overflow > SHMBUS_OVERFLOW_DROP_OLDEST)
		return "its delivery settings are out of range";
	dq->dlq_qid = UINT32_MAX;
	if (q->dlq_qid) {
		if (q->dlq_qid > a->max_queues || q->dlq_qid - 1 == qid)
			return "its dead-letter queue is out of range";
		dq->dlq_qid = q->dlq_qid - 1;
		dq->dlq_gen = q->dlq_gen;
	}
	dq->expire_dlq = flags & SHMBUS_QF_EXPIRE_DLQ;
	dq->checksum = flags & SHMBUS_QF_CHECKSUM;
	dq->damaged = flags & SHMBUS_QF_DAMAGED;
	dq->drop_oldest = flags & SHMBUS_QF_DROP_OLDEST;
	dq->durable = dq->kind == DQ_SUB && (flags & SHMBUS_QF_DURABLE);
	dq->history = dq->kind == DQ_TOPIC ? MIN(q->history, dq->max_len) : 0;
	dq->created_ns = q->created_ns;
	dq->seat_epoch = q->seat_epoch;
	dq->owner_token = q->owner_token;
	/* storage: rings, dedup table, fan-out array, all disjoint */
	if (!ring_range(b, q->ring_off, (uint64_t)dq->cap *
			sizeof(struct shmbus_cell) * dq->nr_prio, &rf, &rn))
		return "its ring is outside the ring area";
	/* each level's ring starts on a unit: the declare's layout */
	rn = units_for((uint64_t)dq->cap * sizeof(struct shmbus_cell)) *
	     dq->nr_prio;
	if (rn > a->ring_units - rf)
		return "its ring is outside the ring area";
	if (q->dedup_cap) {
		if (q->dedup_cap & (q->dedup_cap - 1) ||
		    q->dedup_window_ns > MAX_DURATION_NS ||
		    !ring_range(b, q->dedup_off, (uint64_t)q->dedup_cap *
				sizeof(struct shmbus_dedup), &df, &dn))
			return "its dedup table is out of range";
		dq->dedup_cap = q->dedup_cap;
		dq->dedup_window_ns = q->dedup_window_ns;
	}
	if (dq->kind == DQ_TOPIC && q->fanout) {
		uint64_t n = q->fanout & 0xffff;

		if (!n || !ring_range(b, a->ring_off + (q->fanout >> 16) *
				      SHMBUS_RING_UNIT,
				      n * sizeof(struct shmbus_fanout), &ff, &fn))
			return "its fan-out array is out of range";
		dq->fanout_n = (uint32_t)n;
	}
	if (!range_free(b, rf, rn) || (dn && !range_free(b, df, dn)) ||
	    (fn && !range_free(b, ff, fn)) ||
	    (dn && (df < rf + rn && rf < df + dn)) ||
	    (fn && (ff < rf + rn && rf < ff + fn)) ||
	    (dn && fn && (ff < df + dn && df < ff + fn)))
		return "its storage overlaps another queue's";
	dq->ring_first = rf;
	dq->ring_units = rn;
	units_mark(b, rf, rn, true);
	dq->dedup_first = df;
	dq->dedup_units = dn;
	if (dn)
		units_mark(b, df, dn, true);
	dq->fanout_first = ff;
	dq->fanout_units = fn;
	if (fn)
		units_mark(b, ff, fn, true);
	return NULL;
}

struct adopt_stats {
	unsigned queues, deleting, dropped;
	unsigned slots_live, slots_dead, private_gone;
	unsigned held;
};

/* Make descriptor @qid, which we cannot adopt, a deleted one: its handles
 * get -EIDRM, its storage is not ours to reuse until a grace period. */
static void queue_drop(struct dbus *b, uint32_t qid, const char *why)
{
	struct shmbus_queue *q = &b->arena.queues[qid];
	struct dqueue *dq = &b->queues[qid];

	log_warn("bus %u:%s: queue id %u ('%.*s'): %s; not adopted (its "
		 "handles get -EIDRM)", b->owner_uid, b->name, qid,
		 (int)SHMBUS_NAME_MAX - 1, q->name, why);
	memset(dq, 0, sizeof(*dq));
	dq->gen = (READ_ONCE(q->gen) | 1) + 1;		/* even, newer */
	WRITE_ONCE(q->flags, READ_ONCE(q->flags) | SHMBUS_QF_DELETING);
	smp_store_release(&q->gen, dq->gen);		/* [QDEL] */
}

static void adopt_queues(struct dbus *b, struct adopt_stats *st)
{
	const struct arena *a = &b->arena;

	for (uint32_t qid = 0; qid < a->max_queues; qid++) {
		struct shmbus_queue *aq = &a->queues[qid], q;
		struct dqueue *dq = &b->queues[qid];
		const char *why;
		bool deleting;

		/* [QGEN] gen first (acquire), then the fields it covers */
		q.gen = smp_load_acquire(&aq->gen);
		memcpy((uint8_t *)&q + sizeof(q.gen), (uint8_t *)aq + sizeof(q.gen),
		       sizeof(q) - sizeof(q.gen));
		dq->gen = q.gen;
		if (!q.ring_cap)
			continue;	/* free: never used, or reclaimed */
		/* a delete the dead daemon began (flag) but did not publish
		 * (gen) is finished here */
		deleting = !SHMBUS_QGEN_LIVE(q.gen) ||
			   (q.flags & SHMBUS_QF_DELETING);
		why = queue_adopt(b, qid, &q, dq);
		if (why) {
			queue_drop(b, qid, why);
			st->dropped++;
			continue;
		}
		dq->seat_fds = malloc(dq->nr_seats * sizeof(int));
		if (!dq->seat_fds) {
			units_mark(b, dq->ring_first, dq->ring_units, false);
			units_mark(b, dq->dedup_first, dq->dedup_units, false);
			units_mark(b, dq->fanout_first, dq->fanout_units, false);
			queue_drop(b, qid, "out of memory");
			st->dropped++;
			continue;
		}
		for (uint32_t i = 0; i < dq->nr_seats; i++)
			dq->seat_fds[i] = -1;
		dq->quota_uid = b->owner_uid;
		quota_force(dq->quota_uid, Q_QUEUES, 1);
		quota_force(dq->quota_uid, Q_SEATS, dq->nr_seats);
		if (deleting) {
			if (SHMBUS_QGEN_LIVE(dq->gen)) {
				dq->gen++;
				smp_store_release(&aq->gen, dq->gen);
			}
			dq->reclaim_pending = true;
			dqueue_reclaim_later(b, qid);
			st->deleting++;
		} else {
			dq->live = true;
			st->queues++;
		}
	}
	/* dead-letter queues must still be the queues they were */
	for (uint32_t qid = 0; qid < a->max_queues; qid++) {
		struct dqueue *dq = &b->queues[qid];

		if (dq->live && dq->dlq_qid != UINT32_MAX &&
		    !dqueue_is(b, dq->dlq_qid, dq->dlq_gen))
			dq->dlq_qid = UINT32_MAX;	/* as if deleted */
	}
}

/* Units the dead daemon's bitmap (its arena mirror) marks and no adopted
 * placement holds: fan-out arrays and rings it was waiting to free after
 * a grace period. They wait for one more. */
static void adopt_retired(struct dbus *b)
{
	const struct arena *a = &b->arena;
	uint64_t run = 0;

	for (uint64_t u = 0; u <= a->ring_units; u++) {
		bool extra = u < a->ring_units && !units_used(b, u) &&
			     (READ_ONCE(a->ringmap[u / 64]) & (1ULL << (u % 64)));

		if (extra) {
			run++;
			continue;
		}
		if (run) {
			units_mark(b, u - run, run, true);
			units_retire(b, u - run, run);
			run = 0;
		}
	}
	/* the mirror as the daemon's bitmap now is */
	for (uint64_t w = 0; w < (a->ring_units + 63) / 64; w++)
		WRITE_ONCE(a->ringmap[w], b->ringmap[w]);
}

/* ---- slots ------------------------------------------------------------- */

/* Processes whose maps adoption looked at: a bus's slots name few. */
struct maps_seen {
	unsigned n;
	struct {
		pid_t pid;
		bool maps;
	} e[64];
};

/*
 * Does process @pid map the arena of inode @ino (its /proc/PID/maps has
 * a memfd of ours with that inode)? Every client that owns a slot does:
 * a pid a member wrote into a slot, or reused since, does not, and gets
 * no ghost (nor a pidfd of the daemon's). A process whose maps the
 * daemon may not read (a user's daemon, a non-dumpable process) is taken
 * at its word.
 */
static bool maps_arena(pid_t pid, ino_t ino, struct maps_seen *seen)
{
	char path[64], line[512];
	bool found = false;
	FILE *f;

	for (unsigned i = 0; i < seen->n; i++)
		if (seen->e[i].pid == pid)
			return seen->e[i].maps;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "re");
	if (!f)
		found = errno == EACCES || errno == EPERM;
	while (f && !found && fgets(line, sizeof(line), f)) {
		unsigned long long inode;
		int off = 0;

		/* start-end perms offset dev inode path */
		if (sscanf(line, "%*s %*s %*s %*s %llu %n", &inode, &off) == 1 &&
		    off && (ino_t)inode == ino &&
		    !strncmp(line + off, MEMFD_PREFIX, strlen(MEMFD_PREFIX)))
			found = true;
		/* a line longer than the buffer: skip its rest */
		while (!strchr(line, '\n') && fgets(line, sizeof(line), f))
			;
	}
	if (f)
		fclose(f);
	if (seen->n < 64) {
		seen->e[seen->n].pid = pid;
		seen->e[seen->n].maps = found;
		seen->n++;
	}
	return found;
}

/* Slot @si's record from the arena: its owner alive (a ghost of its
 * connection owns it: true) or not. */
static bool slot_adopt(struct dbus *b, uint32_t si, ino_t ino,
		       struct maps_seen *seen)
{
	struct shmbus_slot *s = &b->arena.slots[si];
	struct dslot *ds = &b->slots[si];
	uint32_t state = smp_load_acquire(&s->state);	/* [SLOT] */
	uint32_t role = READ_ONCE(s->role), qid = READ_ONCE(s->qid);
	uint32_t seat = READ_ONCE(s->seat);
	struct dqueue *dq;

	ds->gen = READ_ONCE(s->gen);
	ds->seat = UINT32_MAX;
	ds->role = role == SHMBUS_ROLE_CONSUMER ? role : SHMBUS_ROLE_PRODUCER;
	ds->qid = qid < b->arena.max_queues ? qid : 0;
	ds->qgen = qid < b->arena.max_queues ? READ_ONCE(s->qgen) : 0;
	ds->pid = (pid_t)READ_ONCE(s->pid);
	dq = &b->queues[ds->qid];
	/* a consumer's seat, if it is one of its live queue's and free */
	if (role == SHMBUS_ROLE_CONSUMER && dqueue_is(b, ds->qid, ds->qgen) &&
	    seat < dq->nr_seats && !dq->seat_slot[seat]) {
		ds->seat = seat;
		dq->seat_slot[seat] = si + 1;
	}
	if (state == SHMBUS_SLOT_ACTIVE && role == ds->role &&
	    qid < b->arena.max_queues && ds->pid > 0 &&
	    maps_arena(ds->pid, ino, seen))
		ds->conn_id = server_ghost(b, READ_ONCE(s->conn_token), ds->pid,
					   READ_ONCE(s->start_time));
	return ds->conn_id != 0;
}

/* The seats in use as the records say, into each live queue's arena
 * descriptor (the dead daemon may have been changing them). */
static void seats_publish(struct dbus *b)
{
	const struct arena *a = &b->arena;

	for (uint32_t qid = 0; qid < a->max_queues; qid++) {
		struct dqueue *dq = &b->queues[qid];
		struct shmbus_queue *q = &a->queues[qid];
		uint64_t used[SHMBUS_SEAT_WORDS] = { 0 };

		if (!dq->live)
			continue;
		for (uint32_t i = 0; i < dq->nr_seats; i++) {
			WRITE_ONCE(q->seat_slot[i], (uint16_t)dq->seat_slot[i]);
			if (dq->seat_slot[i])
				used[i / 64] |= 1ULL << (i % 64);
		}
		for (uint32_t w = 0; w < SHMBUS_SEAT_WORDS; w++)
			WRITE_ONCE(q->seat_used[w], used[w]);
	}
}

static void adopt_slots(struct dbus *b, struct adopt_stats *st)
{
	const struct arena *a = &b->arena;
	struct maps_seen seen = { 0 };
	struct stat sb = { 0 };

	fstat(b->fd, &sb);
	for (uint32_t si = 0; si < a->max_slots; si++) {
		if (READ_ONCE(a->slots[si].state) == SHMBUS_SLOT_FREE)
			continue;
		if (slot_adopt(b, si, sb.st_ino, &seen))
			st->slots_live++;
	}
	seats_publish(b);
	/* the owners that died while no daemon ran, or that it was
	 * releasing: released now, as their kill -9 would have been */
	for (uint32_t si = 0; si < a->max_slots; si++) {
		if (READ_ONCE(a->slots[si].state) == SHMBUS_SLOT_FREE ||
		    b->slots[si].conn_id)
			continue;
		b->slots[si].conn_id = UINT32_MAX;	/* slot_release ends it */
		slot_release(b, si, true);
		st->slots_dead++;
	}
}

/* A private queue belongs to the ghost of its connection, if a slot of
 * that connection's token lives on; otherwise its owner is gone. */
static void adopt_private(struct dbus *b, struct adopt_stats *st)
{
	const struct arena *a = &b->arena;

	for (uint32_t qid = 0; qid < a->max_queues; qid++) {
		struct dqueue *dq = &b->queues[qid];

		if (!dq->live || !dq->owner_token)
			continue;
		for (uint32_t si = 0; si < a->max_slots && !dq->owner_conn; si++)
			if (b->slots[si].conn_id &&
			    READ_ONCE(a->slots[si].conn_token) == dq->owner_token)
				dq->owner_conn = b->slots[si].conn_id;
		if (!dq->owner_conn) {
			dq->owner_token = 0;
			dqueue_delete(b, (int)qid);
			st->private_gone++;
		}
	}
}

void bus_rehome(struct dbus *b, uint32_t ghost, const struct peer *p)
{
	const struct arena *a = &b->arena;
	unsigned slots = 0, queues = 0;

	for (uint32_t si = 0; si < a->max_slots; si++) {
		if (b->slots[si].conn_id != ghost)
			continue;
		b->slots[si].conn_id = p->conn_id;
		WRITE_ONCE(a->slots[si].conn_token, p->token);
		slots++;
	}
	for (uint32_t qid = 0; qid < a->max_queues; qid++) {
		struct dqueue *dq = &b->queues[qid];

		if (!dq->live || dq->owner_conn != ghost)
			continue;
		dq->owner_conn = p->conn_id;
		dq->owner_token = p->token;
		dqueue_republish(b, qid);
		queues++;
	}
	log_info("bus %u:%s: pid %d rejoined; its %u slots and %u private "
		 "queues are its new connection's", b->owner_uid, b->name,
		 p->pid, slots, queues);
}

/* ---- the bus ----------------------------------------------------------- */

/* The superblock's identity as the memfd name says it (a member may have
 * written anything there): what openers then read, and repair keeps. */
static void ident_restore(struct dbus *b, const struct ident *id)
{
	struct shmbus_sb *sb = b->arena.sb;

	WRITE_ONCE(sb->owner_uid, id->uid);
	WRITE_ONCE(sb->owner_gid, id->gid);
	WRITE_ONCE(sb->mode, id->mode);
	WRITE_ONCE(sb->bus_id, id->bus_id);
	for (unsigned i = 0; i < SHMBUS_NAME_MAX; i++)
		WRITE_ONCE(sb->name[i], id->name[i]);
	b->arena.bus_id = id->bus_id;
	repair_record(b);
}

/* Is the superblock at the start of @fd one of our layout version? */
static int version_check(int fd, char *why, size_t len)
{
	struct {
		uint64_t magic;
		uint32_t version;
	} h;

	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    h.magic != SHMBUS_MAGIC) {
		snprintf(why, len, "no shmbus superblock");
		return -EUCLEAN;
	}
	if (h.version != SHMBUS_LAYOUT_VERSION) {
		snprintf(why, len, "arena of layout version %u, this daemon "
			 "reads version %u; left as it is (its processes go "
			 "on without a daemon until they close it)", h.version,
			 SHMBUS_LAYOUT_VERSION);
		return -EPROTONOSUPPORT;
	}
	return 0;
}

int bus_adopt(struct daemon *d, int fd, const char *source, struct dbus **out,
	      char *why, size_t len)
{
	struct adopt_stats st = { 0 };
	int64_t t0 = now_ns();
	struct arena_params ap;
	struct ident id;
	struct stat sb;
	struct dbus *b;
	char path[64];
	int rw, err;

	err = ident_check(d, fd, &id, &sb, why, len);
	if (err)
		goto refused;
	b = bus_find(d, id.uid, id.name);
	if (b) {
		struct stat have;

		if (!fstat(b->fd, &have) && have.st_ino == sb.st_ino &&
		    have.st_dev == sb.st_dev) {
			*out = b;
			return 0;
		}
		snprintf(why, len, "bus %u:%s is live with another arena",
			 id.uid, id.name);
		err = -EEXIST;
		goto refused;
	}
	err = version_check(fd, why, len);
	if (err)
		goto refused;
	/* our own fd, read-write (a read-only client hands its O_RDONLY
	 * one back): the memfd is ours, so reopening it is allowed */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rw = open(path, O_RDWR | O_CLOEXEC);
	if (rw < 0) {
		err = -errno;
		snprintf(why, len, "cannot reopen it: %s", strerror(-err));
		goto refused;
	}
	memset(&ap, 0, sizeof(ap));
	memcpy(ap.name, id.name, sizeof(ap.name));
	ap.uid = id.uid;
	ap.gid = id.gid;
	ap.mode = id.mode;
	err = bus_record(rw, &ap, &b);		/* maps and validates it */
	if (err) {
		snprintf(why, len, "its arena does not validate: %s",
			 strerror(-err));
		goto refused;
	}
	if ((uint64_t)sb.st_size != b->arena.size) {
		snprintf(why, len, "its size %llu is not the superblock's %llu",
			 (unsigned long long)sb.st_size,
			 (unsigned long long)b->arena.size);
		bus_destroy(b);
		err = -EUCLEAN;
		goto refused;
	}
	if (READ_ONCE(b->arena.sb->deleted)) {
		/* its members were told; a name reused since is a new bus */
		snprintf(why, len, "bus %u:%s was deleted", id.uid, id.name);
		bus_destroy(b);
		err = -EIDRM;
		goto refused;
	}
	pools_take(b, false);
	ident_restore(b, &id);
	adopt_queues(b, &st);
	adopt_retired(b);
	st.held = adopt_held(b);
	adopt_slots(b, &st);
	adopt_private(b, &st);
	/* positions the dead daemon claimed and did not mark */
	claims_sweep(b, CLAIMS_ALL);
	fanout_refresh(b);
	WRITE_ONCE(b->arena.sb->adoptions, b->arena.sb->adoptions + 1);
	WRITE_ONCE(b->arena.sb->dir_gen, b->arena.sb->dir_gen + 1);
	quota_force(b->owner_uid, Q_BUSES, 1);
	quota_force(b->owner_uid, Q_BYTES, b->committed);
	bus_link(d, b);
	durable_adopted(b);
	server_want_tick();
	log_info("bus %u:%s adopted from %s in %lld us: %u queues (%u being "
		 "deleted, %u not adoptable), %u slots of live processes, %u "
		 "of dead ones released, %u held messages re-armed, %u "
		 "private queues of gone connections deleted", b->owner_uid,
		 b->name, source, (long long)((now_ns() - t0) / 1000),
		 st.queues, st.deleting, st.dropped, st.slots_live,
		 st.slots_dead, st.held, st.private_gone);
	*out = b;
	return 0;
refused:
	log_warn("arena from %s refused: %s", source, why);
	return err;
}

/* ---- at start: the arenas live processes hold ------------------------------ */

/* A bus held by a process we could not pull it from. */
struct held {
	uid_t uid;
	char name[SHMBUS_NAME_MAX];
	pid_t pid;
	uint64_t start_time;
};

static struct held *held;
static unsigned nr_held, held_cap;

static void held_add(uid_t uid, const char *name, pid_t pid,
		     uint64_t start_time)
{
	if (nr_held == held_cap) {
		unsigned cap = held_cap ? 2 * held_cap : 16;
		struct held *h = realloc(held, cap * sizeof(*h));

		if (!h)
			return;
		held = h;
		held_cap = cap;
	}
	held[nr_held].uid = uid;
	memset(held[nr_held].name, 0, SHMBUS_NAME_MAX);
	snprintf(held[nr_held].name, SHMBUS_NAME_MAX, "%s", name);
	held[nr_held].pid = pid;
	held[nr_held].start_time = start_time;
	nr_held++;
}

bool adopt_pending(uid_t owner, const char *name)
{
	bool any = false;

	for (unsigned i = 0; i < nr_held; ) {
		struct held *h = &held[i];

		if (h->uid != owner || strncmp(h->name, name, SHMBUS_NAME_MAX)) {
			i++;
			continue;
		}
		if (h->start_time && pid_start_time(h->pid) == h->start_time) {
			any = true;
			i++;
			continue;
		}
		held[i] = held[--nr_held];	/* that holder is gone */
	}
	return any;
}

/* ---- the registry -------------------------------------------------------- */

static char reg_path[PATH_MAX];

static uint64_t registry_nonce(void)
{
	uint64_t n = 0;

	if (getrandom(&n, sizeof(n), GRND_NONBLOCK) != sizeof(n))
		n = (uint64_t)getpid() << 32;
	return n;
}

/* Remove the temporary files a killed daemon left beside @path (ours:
 * our uid's, regular, named "<registry>.tmp.*"). */
static void registry_sweep(const char *path)
{
	char dir[PATH_MAX], prefix[NAME_MAX + 8];
	const char *slash = strrchr(path, '/');
	struct dirent *e;
	DIR *d;

	if (!slash)
		return;
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path + 1), path);
	snprintf(prefix, sizeof(prefix), "%.*s.tmp.", NAME_MAX - 8, slash + 1);
	d = opendir(dir);
	while (d && (e = readdir(d))) {
		struct stat st;

		if (strncmp(e->d_name, prefix, strlen(prefix)) ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISREG(st.st_mode) || st.st_uid != geteuid())
			continue;
		unlinkat(dirfd(d), e->d_name, 0);
	}
	if (d)
		closedir(d);
}

/* One "held OWNER NAME PID START" line: @pid (started at @start) maps
 * bus @b. */
static void registry_member(void *ctx, const struct dbus *b, pid_t pid,
			    uint64_t start)
{
	fprintf(ctx, "held %u %s %d %llu\n", (unsigned)b->owner_uid, b->name,
		(int)pid, (unsigned long long)start);
}

void adopt_registry_save(const struct daemon *d)
{
	char tmp[PATH_MAX + 32];
	FILE *f;
	int fd;

	if (!reg_path[0])
		return;
	/* in the socket's directory, which may be a sticky world-writable
	 * one (main.c prepare_dir()): a name nobody can guess and take
	 * first, never through a link; nothing of ours reads another's file
	 * (registry_open()), and a killed daemon's leftovers go at the next
	 * start (registry_sweep()) */
	snprintf(tmp, sizeof(tmp), "%s.tmp.%016llx", reg_path,
		 (unsigned long long)(registry_nonce() ^ (uint64_t)now_ns()));
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		log_warn("registry %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	fprintf(f, "shmbus-registry 2\n");
	/* every bound process, in one pass over the connections */
	server_each_member(registry_member, f);
	/* and those still waited for: a daemon killed before their
	 * holders rejoined must not forget them */
	for (unsigned i = 0; i < nr_held; i++)
		if (!bus_find(d, held[i].uid, held[i].name))
			fprintf(f, "held %u %s %d %llu\n",
				(unsigned)held[i].uid, held[i].name,
				(int)held[i].pid,
				(unsigned long long)held[i].start_time);
	if (fflush(f) || ferror(f)) {
		log_warn("registry %s: %s", tmp, strerror(errno));
		fclose(f);
		unlink(tmp);
		return;
	}
	fclose(f);
	if (rename(tmp, reg_path) < 0)
		log_warn("registry %s: %s", reg_path, strerror(errno));
}

/* The registry at @path, if it is ours (adopt_registry_save()): in a
 * sticky world-writable directory anyone can put a file at that name,
 * and a registry that names a bus holds it. */
static FILE *registry_open(const char *path)
{
	struct stat st;
	FILE *f;
	int fd;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT)
			log_warn("registry %s: %s; ignored", path,
				 strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
	    st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		log_warn("registry %s: not a file of this daemon's uid that "
			 "only it can write; ignored", path);
		close(fd);
		return NULL;
	}
	f = fdopen(fd, "r");
	if (!f)
		close(fd);
	return f;
}

/* Can we read @pid's fd table (as adopt_scan() did)? */
static bool fds_visible(pid_t pid)
{
	char path[64];
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (dir)
		closedir(dir);
	return dir != NULL;
}

void adopt_registry_load(struct daemon *d, const char *path)
{
	char line[160], name[SHMBUS_NAME_MAX];
	unsigned before = nr_held;
	FILE *f;

	snprintf(reg_path, sizeof(reg_path), "%s", path);
	registry_sweep(path);
	f = registry_open(path);
	if (!f)
		return;		/* none: the first daemon here */
	if (!fgets(line, sizeof(line), f) ||
	    strcmp(line, "shmbus-registry 2\n")) {
		log_warn("registry %s: not one of ours; ignored", path);
		fclose(f);
		return;
	}
	while (fgets(line, sizeof(line), f)) {
		char nm[SHMBUS_NAME_MAX + 1];
		unsigned long long start;
		unsigned uid;
		int pid;

		if (sscanf(line, "held %u %64s %d %llu", &uid, nm, &pid,
			   &start) != 4 || strlen(nm) >= SHMBUS_NAME_MAX)
			continue;
		memset(name, 0, sizeof(name));
		memcpy(name, nm, strlen(nm));
		/* a member still alive (the same process) holds it, unless
		 * adopt_scan() looked into its fds and found none of it: a
		 * member may keep its connection and close the arena, and
		 * would hold the name for ever */
		if (!proto_name_valid(name) && !bus_find(d, uid, name) &&
		    !adopt_pending(uid, name) && pid > 0 && start &&
		    pid_start_time(pid) == start && !fds_visible(pid))
			held_add(uid, name, pid, start);
	}
	fclose(f);
	if (nr_held > before)
		log_info("registry: %u buses of the previous daemon are held "
			 "by processes it cannot look into; their clients are "
			 "waited for", nr_held - before);
}

void adopt_fini(void)
{
	free(held);
	held = NULL;
	nr_held = held_cap = 0;
}

/* Pull fd @tfd of process @pid and adopt it. False if we may not. */
static bool pull(struct daemon *d, pid_t pid, int tfd)
{
	char why[256], src[48];
	struct dbus *b;
	int pfd, fd;

	pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pfd < 0)
		return errno == ESRCH;	/* gone: nothing to wait for */
	fd = (int)syscall(SYS_pidfd_getfd, pfd, tfd, 0);
	close(pfd);
	if (fd < 0)
		return errno == ESRCH || errno == EBADF;
	snprintf(src, sizeof(src), "pid %d", (int)pid);
	bus_adopt(d, fd, src, &b, why, sizeof(why));	/* logs a refusal */
	close(fd);
	return true;
}

/*
 * Is fd @tfd of @pid a file of our uid, as every arena of ours is? Anyone
 * can name a memfd like one of ours, and keep any number of them: those
 * are passed over here, unpulled and unlogged, instead of costing a
 * pull and a refusal line each at every start of root's daemon.
 */
static bool fd_ours(pid_t pid, int tfd)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, tfd);
	return !stat(path, &st) && S_ISREG(st.st_mode) &&
	       st.st_uid == geteuid();
}

/* The arenas of our instance in process @pid's fd table. */
static void scan_pid(struct daemon *d, pid_t pid)
{
	char path[64], link[PATH_MAX];
	struct dirent *e;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return;		/* gone, or not ours to look at */
	while ((e = readdir(dir))) {
		struct ident id;
		int tfd = atoi(e->d_name);

		if (e->d_name[0] < '0' || e->d_name[0] > '9' ||
		    fd_link(pid, tfd, link, sizeof(link)) ||
		    ident_parse(link, &id) || id.instance != d->instance)
			continue;
		if (bus_find(d, id.uid, id.name))
			continue;	/* adopted already (or its name is) */
		if (!fd_ours(pid, tfd))
			continue;	/* not an arena of ours, whatever its name */
		if (!pull(d, pid, tfd)) {
			log_info("bus %u:%s is held by pid %d, which does not "
				 "let us take its arena: waiting for it to "
				 "rejoin", id.uid, id.name, (int)pid);
			held_add(id.uid, id.name, pid, pid_start_time(pid));
		}
	}
	closedir(dir);
}

void adopt_scan(struct daemon *d)
{
	int64_t t0 = now_ns();
	unsigned before = 0, after = 0;
	struct dirent *e;
	DIR *proc;

	for (struct dbus *b = d->buses; b; b = b->next)
		before++;
	proc = opendir("/proc");
	if (!proc) {
		log_warn("/proc: %s; buses are adopted as their clients "
			 "rejoin", strerror(errno));
		return;
	}
	while ((e = readdir(proc))) {
		pid_t pid = (pid_t)atoi(e->d_name);

		if (pid > 0 && pid != getpid())
			scan_pid(d, pid);
	}
	closedir(proc);
	for (struct dbus *b = d->buses; b; b = b->next)
		after++;
	if (after > before || nr_held)
		log_info("adopted %u buses that live processes hold in %lld us"
			 "%s", after - before,
			 (long long)((now_ns() - t0) / 1000),
			 nr_held ? "; some wait for their clients to rejoin" :
				   "");
}
