// SPDX-License-Identifier: MIT
/*
 * queue.c - queues (and the topics and subscriptions that share their
 * directory): declaring one (settings, ring and dedup storage, consumer
 * seats, the arena descriptor), deleting one, and reclaiming its memory
 * after a grace period (defer.c).
 *
 * A queue's descriptor in the arena is written by the daemon alone, gen
 * last with a release store: a reader that sees an odd (live) gen sees
 * everything before it. Delete makes gen even at once, so that every
 * handle notices (-EIDRM); the ring and seats are reused only after the
 * grace period, when no reader can still be inside them.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "shmbusd.h"
#include "room.h"
#include "epoch.h"
#include "pool.h"

#define DEF_MAX_LEN		1024u
#define DEF_MSG_SIZE		4096u
#define DEF_MAX_CONSUMERS	16u
#define DEF_LEASE_NS		(30 * NSEC_PER_SEC)
#define MAX_DURATION_NS		(365LL * 24 * 3600 * NSEC_PER_SEC)

static uint64_t ring_units_for(uint32_t cap)
{
	return units_for((uint64_t)cap * sizeof(struct shmbus_cell));
}

static uint32_t roundup_pow2(uint32_t v)
{
	return v <= 2 ? 2 : 1u << (32 - __builtin_clz(v - 1));
}

void dqueue_ring_level(const struct dbus *b, const struct dqueue *dq,
		       uint32_t level, struct ring *r)
{
	struct shmbus_queue *q = &b->arena.queues[dq - b->queues];

	r->cells = unit_addr(b, dq->ring_first + level * ring_units_for(dq->cap));
	r->tail = level ? &q->prio_tail[level - 1] : &q->tail;
	r->head = level ? &q->prio_head[level - 1] : &q->head;
	ring_geometry(r, dq->cap);
}

int dqueue_find(const struct dbus *b, const char *name)
{
	/* an intake has its queue's name, and is found through it */
	for (uint32_t i = 0; i < b->arena.max_queues; i++)
		if (b->queues[i].live && b->queues[i].kind != DQ_INTAKE &&
		    !strncmp(b->queues[i].name, name, SHMBUS_NAME_MAX))
			return (int)i;
	return -ENOENT;
}

bool dqueue_is(const struct dbus *b, uint32_t qid, uint32_t qgen)
{
	return qid < b->arena.max_queues && b->queues[qid].live &&
	       b->queues[qid].gen == qgen;
}

/* ---- consumer seats: one eventfd each, made when first taken ------------ */

/* @n seats, none with an eventfd yet. */
static int *seats_open(uint32_t n)
{
	int *fds = malloc(n * sizeof(int));

	if (!fds)
		return NULL;
	for (uint32_t i = 0; i < n; i++)
		fds[i] = -1;
	return fds;
}

void seats_close(struct dqueue *dq)
{
	for (uint32_t i = 0; i < dq->nr_seats; i++)
		if (dq->seat_fds[i] >= 0)
			close(dq->seat_fds[i]);
	free(dq->seat_fds);
	dq->seat_fds = NULL;
	dq->nr_seats = 0;
	dq->seat_epoch = 0;
	memset(dq->seat_slot, 0, sizeof(dq->seat_slot));
}

int seat_fd_make(struct dbus *b, uint32_t qid, uint32_t seat)
{
	struct dqueue *dq = &b->queues[qid];
	int fd;

	if (dq->seat_fds[seat] >= 0)
		return 0;
	/* blocking on purpose: a consumer with no timeout sleeps in a
	 * single read() (wake.c); writers never block */
	fd = eventfd(0, EFD_CLOEXEC);
	if (fd < 0) {
		log_warn("bus '%s': queue '%s': seat %u eventfd: %s", b->name,
			 dq->name, seat, strerror(errno));
		return -errno;
	}
	dq->seat_fds[seat] = fd;
	dq->seat_epoch++;
	/* [SEATFD] before the attach reply that gives the seat away: the
	 * consumer sets its sleep bit only after that reply, so a producer
	 * that sees the bit (and orders its loads with smp_rmb) sees this
	 * epoch, or a later one (lib wake.c claim_seats) */
	WRITE_ONCE(b->arena.queues[qid].seat_epoch, dq->seat_epoch);
	return 0;
}

unsigned seat_fds_of(const struct dqueue *dq, uint64_t map[SHMBUS_SEAT_WORDS],
		     int **fds)
{
	static int out[SHMBUS_MAX_SEATS];	/* sent before the next request */
	unsigned n = 0;

	memset(map, 0, SHMBUS_SEAT_WORDS * sizeof(map[0]));
	for (uint32_t i = 0; i < dq->nr_seats; i++) {
		if (dq->seat_fds[i] < 0)
			continue;
		map[i / 64] |= 1ULL << (i % 64);
		out[n++] = dq->seat_fds[i];
	}
	*fds = out;
	return n;
}

void seats_kick(const struct dqueue *dq, bool all)
{
	static const uint64_t one = 1;

	for (uint32_t i = 0; i < dq->nr_seats; i++) {
		if ((!all && !dq->seat_slot[i]) || dq->seat_fds[i] < 0)
			continue;
		if (write(dq->seat_fds[i], &one, sizeof(one)) < 0)
			log_warn("seat %u eventfd write: %s", i, strerror(errno));
	}
}

/* ---- the arena's descriptor ----------------------------------------------- */

static uint32_t descriptor_flags(const struct dqueue *dq)
{
	uint32_t f = dq->expire_dlq ? SHMBUS_QF_EXPIRE_DLQ : 0;

	if (dq->kind == DQ_TOPIC)
		f |= SHMBUS_QF_TOPIC;
	if (dq->kind == DQ_SUB)
		f |= SHMBUS_QF_SUB;
	if (dq->drop_oldest)
		f |= SHMBUS_QF_DROP_OLDEST;
	if (dq->checksum)
		f |= SHMBUS_QF_CHECKSUM;
	if (dq->damaged)
		f |= SHMBUS_QF_DAMAGED;
	if (dq->durable)
		f |= SHMBUS_QF_DURABLE;
	if (dq->kind == DQ_INTAKE)
		f |= SHMBUS_QF_INTAKE;
	else if (dq->intake)
		f |= SHMBUS_QF_PERSISTENT;
	return f;
}

void dqueue_image(const struct dbus *b, const struct dqueue *dq,
		  struct shmbus_queue *q)
{
	const struct arena *a = &b->arena;

	if (dq->live) {
		q->ring_cap = dq->cap;
		q->max_len = dq->max_len;
		q->ring_off = a->ring_off + dq->ring_first * SHMBUS_RING_UNIT;
		q->msg_size = dq->msg_size;
		q->nr_seats = dq->nr_seats;
		q->seat_epoch = dq->seat_epoch;
		q->created_ns = dq->created_ns;
		memcpy(q->name, dq->name, sizeof(q->name));
		q->flags = descriptor_flags(dq);
		q->lease_ns = dq->lease_ns;
		q->ttl_ns = dq->ttl_ns;
		q->backoff_init_ns = dq->backoff_init_ns;
		q->backoff_max_ns = dq->backoff_max_ns;
		q->backoff_mult_milli = dq->backoff_mult_milli;
		q->timed = dq->timed;
		q->max_deliveries = dq->max_deliveries;
		q->dlq_qid = dq->dlq_qid == UINT32_MAX ? 0 : dq->dlq_qid + 1;
		q->dlq_gen = dq->dlq_gen;
		q->overflow = dq->overflow;
		q->nr_prio = dq->nr_prio;
		if (dq->dedup_cap) {
			q->dedup_off = a->ring_off +
				       dq->dedup_first * SHMBUS_RING_UNIT;
			q->dedup_cap = dq->dedup_cap;
			q->dedup_window_ns = dq->dedup_window_ns;
		}
		/* an intake's line 14 is its queue's journal numbers */
		if (dq->kind != DQ_INTAKE)
			q->history = dq->history;
		if (dq->fanout_units)
			q->fanout = (dq->fanout_first << 16) | dq->fanout_n;
		q->owner_token = dq->owner_conn ? dq->owner_token : 0;
		q->intake = dq->intake;
		q->sync = dq->sync;
	}
}

void dqueue_republish(struct dbus *b, uint32_t qid)
{
	struct shmbus_queue *q = &b->arena.queues[qid];
	struct shmbus_queue img;

	memset(&img, 0, sizeof(img));
	dqueue_image(b, &b->queues[qid], &img);
	WRITE_ONCE(q->owner_token, img.owner_token);
	WRITE_ONCE(q->intake, img.intake);
	WRITE_ONCE(q->sync, img.sync);
	WRITE_ONCE(q->flags, img.flags);
}

/* Publish @dq's state in the arena descriptor @q, gen last (release). */
static void dqueue_publish(const struct dbus *b, const struct dqueue *dq,
			   struct shmbus_queue *q)
{
	memset((uint8_t *)q + sizeof(q->gen), 0, sizeof(*q) - sizeof(q->gen));
	dqueue_image(b, dq, q);
	/* [QGEN] release: everything above is visible to whoever sees the
	 * new gen with an acquire load (arena_find_queue(), fill_info(),
	 * the redrive and reply lookups in lib dlq.c and reqrep.c) */
	smp_store_release(&q->gen, dq->gen);
}

/* ---- declare ------------------------------------------------------------- */

/* The delivery settings of a declare, checked, defaults filled in. */
static int queue_semantics(const struct dbus *b,
			   const struct sbc_queue_declare *req,
			   struct dqueue *cfg)
{
	cfg->lease_ns = req->lease_ns ? req->lease_ns : DEF_LEASE_NS;
	cfg->ttl_ns = req->ttl_ns;
	cfg->backoff_init_ns = req->backoff_init_ns;
	cfg->backoff_mult_milli = req->backoff_mult_milli
				  ? req->backoff_mult_milli : 2000;
	cfg->backoff_max_ns = req->backoff_max_ns ? req->backoff_max_ns
						  : 10 * req->backoff_init_ns;
	cfg->max_deliveries = req->max_deliveries;
	cfg->expire_dlq = req->flags & SBC_QUEUE_EXPIRE_DLQ;
	cfg->checksum = req->flags & SBC_QUEUE_CHECKSUM;
	cfg->dedup_window_ns = req->dedup_window_ns;
	cfg->overflow = req->overflow;
	cfg->nr_prio = req->priorities ? req->priorities : 1;
	if (req->overflow > SHMBUS_OVERFLOW_DROP_OLDEST ||
	    req->priorities > SHMBUS_MAX_PRIO ||
	    ((req->overflow || cfg->nr_prio > 1) &&
	     (req->flags & SBC_QUEUE_TOPIC)))
		return -EINVAL;
	if (cfg->lease_ns < NSEC_PER_MSEC || cfg->lease_ns > MAX_DURATION_NS ||
	    cfg->ttl_ns > MAX_DURATION_NS ||
	    cfg->backoff_init_ns > MAX_DURATION_NS ||
	    cfg->backoff_max_ns > MAX_DURATION_NS ||
	    cfg->backoff_max_ns < cfg->backoff_init_ns ||
	    cfg->backoff_mult_milli < 1000 || cfg->backoff_mult_milli > 100000 ||
	    cfg->dedup_window_ns > MAX_DURATION_NS) {
		log_info("queue '%s': delivery settings out of range",
			 req->name);
		return -EINVAL;
	}
	if (!proto_all_zero(req->dlq, sizeof(req->dlq))) {
		int d;

		if (proto_name_valid(req->dlq))
			return -EINVAL;
		if (strcmp(req->dlq, req->name) == 0) {
			log_info("queue '%s': cannot be its own dead-letter "
				 "queue", req->name);
			return -EINVAL;
		}
		d = dqueue_find(b, req->dlq);
		if (d < 0) {
			log_info("queue '%s': dead-letter queue '%s' does not "
				 "exist (declare it first)", req->name, req->dlq);
			return -ENOENT;
		}
		cfg->dlq_qid = (uint32_t)d;
		cfg->dlq_gen = b->queues[d].gen;
	} else if (cfg->expire_dlq) {
		log_info("queue '%s': expire-to-DLQ without a dead-letter "
			 "queue", req->name);
		return -EINVAL;
	}
	return 0;
}

/*
 * The shape of a declare, defaults filled in, into @cfg: max_len (a
 * topic's ring is its history: max_len messages, 0 = none), msg_size,
 * seats, kind; then the delivery settings.
 */
static int queue_config(const struct dbus *b,
			const struct sbc_queue_declare *req,
			enum dqueue_kind kind, struct dqueue *cfg)
{
	const struct arena *a = &b->arena;
	bool topic = req->flags & SBC_QUEUE_TOPIC;
	int err;

	cfg->dlq_qid = UINT32_MAX;
	cfg->kind = topic ? DQ_TOPIC : kind;
	cfg->max_len = topic ? MAX(req->max_len, 2u)
		       : req->max_len ? req->max_len : DEF_MAX_LEN;
	cfg->msg_size = req->msg_size ? req->msg_size : DEF_MSG_SIZE;
	cfg->nr_seats = topic ? 1 : req->max_consumers ? req->max_consumers
					 : DEF_MAX_CONSUMERS;
	cfg->history = topic ? req->max_len : 0;
	if (cfg->max_len < 1 || cfg->max_len > SHMBUS_RING_MAX_CAP ||
	    cfg->nr_seats < 1 || cfg->nr_seats > SHMBUS_MAX_SEATS ||
	    (req->flags & ~SBC_QUEUE__ALL) || req->__pad ||
	    (!(req->flags & SBC_QUEUE_DURABLE) &&
	     (req->sync || req->sync_interval_ns)))
		return -EINVAL;
	err = queue_semantics(b, req, cfg);
	if (err)
		return err;
	if (cfg->msg_size > a->pool[a->nr_pools - 1].payload_max) {
		log_info("queue '%s': msg_size %u exceeds the largest pool "
			 "payload %u", req->name, cfg->msg_size,
			 a->pool[a->nr_pools - 1].payload_max);
		return -EMSGSIZE;
	}
	return 0;
}

/* Why the last declare of an existing queue was refused (declare_why()):
 * one line that fits a reply's reason. */
static char why_declare[SBC_REASON_MAX];
static bool why_full;

const char *declare_why(void)
{
	return why_declare;
}

/* Append "NAME HAVE (this declare: WANT)", or " ..." once when it would
 * not fit whole. */
static void differs_text(const char *name, const char *have,
			 const char *want)
{
	size_t n = strlen(why_declare);
	char piece[96];
	int len;

	if (why_full)
		return;
	len = snprintf(piece, sizeof(piece), "%s%s %s (this declare: %s)",
		       strchr(why_declare, ':') ? ", " : ": ", name, have,
		       want);
	if (n + (size_t)len + 5 > sizeof(why_declare)) {
		snprintf(why_declare + n, sizeof(why_declare) - n, " ...");
		why_full = true;
		return;
	}
	memcpy(why_declare + n, piece, (size_t)len + 1);
}

static void differs(const char *name, uint64_t have, uint64_t want)
{
	char h[24], w[24];

	if (have == want)
		return;
	snprintf(h, sizeof(h), "%llu", (unsigned long long)have);
	snprintf(w, sizeof(w), "%llu", (unsigned long long)want);
	differs_text(name, h, w);
}

/* A duration, in seconds as the CLI takes them. */
static void differs_s(const char *name, uint64_t have_ns, uint64_t want_ns)
{
	char h[24], w[24];

	if (have_ns == want_ns)
		return;
	snprintf(h, sizeof(h), "%g s", have_ns / 1e9);
	snprintf(w, sizeof(w), "%g s", want_ns / 1e9);
	differs_text(name, h, w);
}

static const char *overflow_name(uint32_t o)
{
	return o == SHMBUS_OVERFLOW_BLOCK ? "block" :
	       o == SHMBUS_OVERFLOW_REJECT ? "reject" :
	       o == SHMBUS_OVERFLOW_DROP_OLDEST ? "drop-oldest" : "?";
}

/*
 * A declare of existing queue @dq: fine if it asks for the same; else
 * -EEXIST, and declare_why() names each setting that differs, with the
 * queue's value and the declare's (defaults filled in), in one line.
 */
static int declare_existing(const struct dbus *b, const struct dqueue *dq,
			    const struct dqueue *cfg)
{
	why_declare[0] = '\0';
	if (dq->kind != cfg->kind) {
		snprintf(why_declare, sizeof(why_declare), "'%s' exists as a %s",
			 dq->name, dq->kind == DQ_TOPIC ? "topic" :
			 dq->kind == DQ_SUB ? "subscription" : "queue");
		log_info("%s", why_declare);
		return -EEXIST;
	}
	why_full = false;
	snprintf(why_declare, sizeof(why_declare),
		 "%s '%s' exists with other settings",
		 dq->kind == DQ_TOPIC ? "topic" : "queue", dq->name);
	if (dq->kind == DQ_TOPIC)
		differs("history", dq->history, cfg->history);
	else
		differs("max-len", dq->max_len, cfg->max_len);
	differs("msg-size", dq->msg_size, cfg->msg_size);
	if (dq->kind != DQ_TOPIC)
		differs("max-consumers", dq->nr_seats, cfg->nr_seats);
	differs_s("lease", dq->lease_ns, cfg->lease_ns);
	differs_s("ttl", dq->ttl_ns, cfg->ttl_ns);
	differs_s("backoff", dq->backoff_init_ns, cfg->backoff_init_ns);
	differs_s("backoff-max", dq->backoff_max_ns, cfg->backoff_max_ns);
	differs("backoff-mult (x1000)", dq->backoff_mult_milli,
		cfg->backoff_mult_milli);
	differs("max-deliveries", dq->max_deliveries, cfg->max_deliveries);
	if (dq->dlq_qid != cfg->dlq_qid || dq->dlq_gen != cfg->dlq_gen)
		differs_text("dlq", dq->dlq_qid == UINT32_MAX ? "none" :
			     b->queues[dq->dlq_qid].name,
			     cfg->dlq_qid == UINT32_MAX ? "none" :
			     b->queues[cfg->dlq_qid].name);
	if (dq->expire_dlq != cfg->expire_dlq)
		differs_text("expire-to-dlq", dq->expire_dlq ? "yes" : "no",
			     cfg->expire_dlq ? "yes" : "no");
	if (dq->checksum != cfg->checksum)
		differs_text("checksum", dq->checksum ? "yes" : "no",
			     cfg->checksum ? "yes" : "no");
	differs_s("dedup-window", dq->dedup_window_ns, cfg->dedup_window_ns);
	if (dq->overflow != cfg->overflow)
		differs_text("overflow", overflow_name(dq->overflow),
			     overflow_name(cfg->overflow));
	differs("priorities", dq->nr_prio, cfg->nr_prio);
	if (!strchr(why_declare, ':')) {
		why_declare[0] = '\0';
		return 0;
	}
	log_info("%s", why_declare);
	return -EEXIST;
}

/* A descriptor neither live nor waiting to be reclaimed, or -ENOSPC. */
static int64_t free_qid(const struct dbus *b)
{
	for (uint32_t i = 0; i < b->arena.max_queues; i++)
		if (!b->queues[i].live && !b->queues[i].reclaim_pending)
			return i;
	return -ENOSPC;
}

/* Ring-area storage for @cfg: a dedup table (twice the capacity: keys
 * outlive their messages) if it has a window, then nr_prio rings.
 * Fills cfg->dedup_*, ring_first, ring_units. */
static int queue_storage(struct dbus *b, const char *name, struct dqueue *cfg)
{
	int64_t first;

	cfg->dedup_cap = 0;
	cfg->dedup_units = 0;
	if (cfg->dedup_window_ns) {
		uint32_t dc = MAX(2 * cfg->cap, 1024u);

		cfg->dedup_units = units_for((uint64_t)dc *
					     sizeof(struct shmbus_dedup));
		first = units_alloc(b, cfg->dedup_units);
		if (first < 0) {
			log_info("queue '%s': no storage left for a dedup "
				 "table of %u keys", name, dc);
			cfg->dedup_units = 0;
			return -ENOSPC;
		}
		cfg->dedup_first = (uint64_t)first;
		cfg->dedup_cap = dc;
		memset(unit_addr(b, cfg->dedup_first), 0,
		       cfg->dedup_units * SHMBUS_RING_UNIT);
	}
	cfg->ring_units = ring_units_for(cfg->cap) * cfg->nr_prio;
	first = units_alloc(b, cfg->ring_units);
	if (first < 0) {
		if (cfg->dedup_units)
			units_mark(b, cfg->dedup_first, cfg->dedup_units, false);
		cfg->dedup_units = 0;
		cfg->dedup_cap = 0;
		log_info("queue '%s': no ring storage left for %u slots",
			 name, cfg->cap);
		return -ENOSPC;
	}
	cfg->ring_first = (uint64_t)first;
	return 0;
}

/* Give back what @dq was charged (its declarer's queue and seats). */
static void queue_uncharge(const struct dqueue *dq)
{
	quota_release(dq->quota_uid, Q_SEATS, dq->nr_seats);
	quota_release(dq->quota_uid, Q_QUEUES, 1);
}

/* Make descriptor @qid queue @cfg: every ring empty, the arena's copy
 * published (gen last), the directory generation bumped. The descriptor
 * is unused and no reader can still be looking at its old ring: its
 * reclamation waited for a grace period. */
static void queue_install(struct dbus *b, uint32_t qid, struct dqueue *cfg)
{
	const struct arena *a = &b->arena;
	struct shmbus_queue *q = &a->queues[qid];
	struct dqueue *dq = &b->queues[qid];
	struct ring r;

	cfg->live = true;
	cfg->reclaim_pending = false;
	cfg->gen = (dq->gen + 1) | 1;		/* the next odd gen */
	cfg->created_ns = (uint64_t)realtime_ns();
	*dq = *cfg;
	for (uint32_t l = 0; l < dq->nr_prio; l++) {
		dqueue_ring_level(b, dq, l, &r);
		ring_init_cells(&r);	/* every cell empty, lap 0 */
	}
	q->head = q->tail = 0;
	memset(q->prio_tail, 0, sizeof(q->prio_tail));
	memset(q->prio_head, 0, sizeof(q->prio_head));
	dqueue_publish(b, dq, q);
	WRITE_ONCE(a->sb->dir_gen, a->sb->dir_gen + 1);
}

int queue_create(struct dbus *b, const struct peer *p,
		 const struct sbc_queue_declare *req,
		 struct sbc_queue_declare_reply *rep, enum dqueue_kind kind)
{
	struct dqueue cfg = { 0 };
	int64_t qid;
	int id, err;

	err = queue_config(b, req, kind, &cfg);
	if (err)
		return err;
	/* an intake is made beside its queue (durable.c), of the same name */
	id = kind == DQ_INTAKE ? -ENOENT : dqueue_find(b, req->name);
	if (id >= 0) {
		err = declare_existing(b, &b->queues[id], &cfg);
		if (err)
			return err;
		rep->qid = id;
		rep->gen = b->queues[id].gen;
		rep->created = 0;
		return 0;
	}
	qid = free_qid(b);
	if (qid < 0)
		return (int)qid;
	memcpy(cfg.name, req->name, sizeof(cfg.name));
	cfg.cap = roundup_pow2(cfg.max_len);
	cfg.owner_conn = req->flags & SBC_QUEUE_PRIVATE ? p->conn_id : 0;
	cfg.owner_token = cfg.owner_conn ? p->token : 0;
	err = quota_charge(p->uid, p->pid, Q_QUEUES, 1);
	if (err)
		return err;
	err = quota_charge(p->uid, p->pid, Q_SEATS, cfg.nr_seats);
	if (err) {
		quota_release(p->uid, Q_QUEUES, 1);
		return err;
	}
	cfg.quota_uid = p->uid;
	cfg.seat_fds = seats_open(cfg.nr_seats);
	err = cfg.seat_fds ? queue_storage(b, req->name, &cfg) : -ENOMEM;
	if (err) {
		if (cfg.seat_fds)
			seats_close(&cfg);
		queue_uncharge(&cfg);
		return err;
	}
	queue_install(b, (uint32_t)qid, &cfg);
	rep->qid = (uint32_t)qid;
	rep->gen = cfg.gen;
	rep->created = 1;
	if (cfg.kind == DQ_TOPIC)
		fanout_refresh(b);	/* existing patterns may match it */
	if (kind != DQ_INTAKE)
		log_info("bus '%s': queue '%s' declared (id %u, capacity %u, "
			 "msg_size %u, max_consumers %u)", b->name, cfg.name,
			 (uint32_t)qid, cfg.cap, cfg.msg_size, cfg.nr_seats);
	return 0;
}

/* ---- delete and reclaim -------------------------------------------------- */

/* Free what deleted queue @dq held: its grace period is over (defer.c). */
static void queue_reclaim(struct dbus *b, struct defer_head *h, bool gp_over)
{
	struct dqueue *dq = container_of(h, struct dqueue, reclaim);
	uint32_t qid = (uint32_t)(dq - b->queues);
	const struct arena *a = &b->arena;
	unsigned freed = 0;
	struct ring r;

	if (!gp_over) {
		/* the bus is going away: touch nothing in the arena */
		queue_uncharge(dq);
		seats_close(dq);
		return;
	}
	for (uint32_t l = 0; l < dq->nr_prio; l++) {
		dqueue_ring_level(b, dq, l, &r);
		for (uint32_t i = 0; i <= r.mask; i++) {
			uint64_t v = READ_ONCE(r.cells[i].v);
			uint32_t ref = SHMBUS_CELL_REF(v);

			if (!ring_cell_full(&r, i, v) || !chunk_at(a, ref))
				continue;
			chunk_unref(a, NULL, ref);	/* topic messages: ours */
			freed++;
		}
	}
	units_mark(b, dq->ring_first, dq->ring_units, false);
	if (dq->dedup_units)
		units_mark(b, dq->dedup_first, dq->dedup_units, false);
	dq->dedup_units = 0;
	dq->dedup_cap = 0;
	queue_uncharge(dq);
	seats_close(dq);
	dq->reclaim_pending = false;
	dqueue_publish(b, dq, &a->queues[qid]);	/* gen stays even */
	log_info("bus '%s': queue id %u reclaimed (%u messages freed)",
		 b->name, qid, freed);
}

void dqueue_delete(struct dbus *b, int id)
{
	const struct arena *a = &b->arena;
	struct dqueue *dq = &b->queues[id];

	dq->live = false;
	dq->gen++;		/* even: every handle sees a gen it did not
				 * attach with, from the release store on */
	a->queues[id].flags |= SHMBUS_QF_DELETING;
	/* [QDEL] release: a reader that read the descriptor's fields and
	 * then, after smp_rmb(), still sees the old gen read them before
	 * this delete (the re-checks in arena_find_queue(), fill_info(),
	 * dlq.c and reqrep.c); handles notice the even gen on their next
	 * call (attachment_live()) */
	smp_store_release(&a->queues[id].gen, dq->gen);
	WRITE_ONCE(a->sb->dir_gen, a->sb->dir_gen + 1);
	/* sleeping consumers, and producers sleeping for room, wake and
	 * find the queue gone (-EIDRM): [ROOM] the gen above before */
	seats_kick(dq, true);
	room_wake(&a->queues[id]);
	timers_drop(b, (uint32_t)id);
	durable_deleted(b, (uint32_t)id);
	dq->reclaim_pending = true;
	dq->owner_conn = 0;
	dq->owner_token = 0;
	defer(b, &dq->reclaim, queue_reclaim);
	if (dq->kind == DQ_TOPIC)
		fanout_clear(b, (uint32_t)id);
	if (dq->kind != DQ_QUEUE)
		fanout_refresh(b);
	log_info("bus '%s': queue '%s' deleted; reclaiming after a grace "
		 "period", b->name, dq->name);
}

void dqueue_reclaim_later(struct dbus *b, uint32_t qid)
{
	defer(b, &b->queues[qid].reclaim, queue_reclaim);
}
