// SPDX-License-Identifier: MIT
/*
 * busmgr.c - what the daemon owns: buses (arena creation and sealing,
 * permissions), queues (declare, delete, deferred reclamation after a
 * cross-process grace period), participant slots (attach, detach, and
 * reclaim when a client's connection closes, kill -9 included).
 *
 * Arena backing: by default a memfd sealed against shrinking and growing
 * (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), so no client that holds the
 * fd can truncate it and make every other process take SIGBUS. With
 * --arena-dir the arena is an unlinked file in that directory (a tmpfs or
 * hugetlbfs of the operator's choosing), which cannot be sealed. Either
 * way the whole size is fallocate()d up front: a full tmpfs or memory
 * shortage fails bus creation with -ENOSPC/-ENOMEM, never a SIGBUS later.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmbusd.h"
#include "epoch.h"
#include "pool.h"
#include "ring.h"

#define DEF_MAX_LEN		1024u
#define DEF_MSG_SIZE		4096u
#define DEF_MAX_CONSUMERS	16u

struct daemon_cfg dcfg;
struct dbus *buses;		/* deliver.c walks them too */

unsigned bus_perms(const struct dbus *b, const struct peer *p)
{
	if (p->uid == 0)
		return 7;
	if (p->uid == b->owner_uid)
		return (b->mode >> 6) & 7;
	if (p->gid == b->owner_gid)
		return (b->mode >> 3) & 7;
	for (int i = 0; i < p->ngroups; i++)
		if (p->groups[i] == b->owner_gid)
			return (b->mode >> 3) & 7;
	return b->mode & 7;
}

static bool is_owner(const struct dbus *b, const struct peer *p)
{
	return p->uid == 0 || p->uid == b->owner_uid;
}

static struct dbus *bus_find(const char *name)
{
	for (struct dbus *b = buses; b; b = b->next)
		if (!strncmp(b->name, name, SHMBUS_NAME_MAX))
			return b;
	return NULL;
}

static int arena_backing(const char *name, uint64_t size)
{
	char desc[96];
	int fd, err;

	if (dcfg.arena_dir) {
		fd = open(dcfg.arena_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	} else {
		snprintf(desc, sizeof(desc), "shmbus:%s", name);
		fd = memfd_create(desc, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	}
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, size) < 0)
		goto fail;
	/* reserve every page now: ENOSPC here, not SIGBUS later */
	if (fallocate(fd, 0, 0, size) < 0)
		goto fail;
	return fd;
fail:
	err = -errno;
	close(fd);
	return err;
}

static int bus_create(const struct sbc_bus_open *req, const struct peer *p,
		      struct dbus **out)
{
	struct arena_params ap;
	char why[128] = "", path[64];
	struct dbus *b;
	uint64_t size;
	void *mem;
	int fd, err;

	memset(&ap, 0, sizeof(ap));
	memcpy(ap.name, req->name, sizeof(ap.name));
	ap.uid = p->uid;
	ap.gid = p->gid;
	ap.mode = req->mode;
	ap.max_queues = req->max_queues;
	ap.max_slots = req->max_slots;
	ap.ring_bytes = req->ring_bytes;
	ap.nr_pools = req->nr_pools;
	for (unsigned i = 0; i < req->nr_pools; i++) {
		ap.pools[i].payload = req->pools[i].payload;
		ap.pools[i].count = req->pools[i].count;
	}
	err = arena_params_check(&ap, why, sizeof(why));
	if (err) {
		log_warn("bus '%s': refusing to create: %s", req->name, why);
		return err;
	}
	size = arena_size_for(&ap);
	fd = arena_backing(ap.name, size);
	if (fd < 0) {
		log_warn("bus '%s': cannot reserve %llu bytes: %s", ap.name,
			 (unsigned long long)size, strerror(-fd));
		return fd;
	}
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED) {
		err = -errno;
		goto fail_fd;
	}
	err = arena_format(mem, size, &ap);
	munmap(mem, size);
	if (err)
		goto fail_fd;
	if (!dcfg.arena_dir &&
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		err = -errno;
		goto fail_fd;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		err = -ENOMEM;
		goto fail_fd;
	}
	b->fd = fd;
	b->ro_fd = -1;
	memcpy(b->name, ap.name, sizeof(b->name));
	b->owner_uid = ap.uid;
	b->owner_gid = ap.gid;
	b->mode = ap.mode;
	err = arena_map(&b->arena, fd, false);
	if (err)
		goto fail_b;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	b->ro_fd = open(path, O_RDONLY | O_CLOEXEC);
	b->queues = calloc(b->arena.max_queues, sizeof(*b->queues));
	b->slots = calloc(b->arena.max_slots, sizeof(*b->slots));
	b->ringmap = calloc((b->arena.ring_units + 63) / 64, sizeof(uint64_t));
	if (b->ro_fd < 0 || !b->queues || !b->slots || !b->ringmap) {
		err = b->ro_fd < 0 ? -errno : -ENOMEM;
		goto fail_map;
	}
	WRITE_ONCE(b->arena.sb->daemon_pid, (uint32_t)getpid());
	b->next = buses;
	buses = b;
	kmod_watch(b);
	log_info("bus '%s' created by uid %u pid %d: %llu bytes, mode %04o, "
		 "%u queues, %u slots, %u pools%s", b->name, p->uid, p->pid,
		 (unsigned long long)size, ap.mode, ap.max_queues,
		 ap.max_slots, ap.nr_pools,
		 dcfg.arena_dir ? " (unsealed file)" : " (sealed memfd)");
	*out = b;
	return 0;

fail_map:
	arena_unmap(&b->arena);
	if (b->ro_fd >= 0)
		close(b->ro_fd);
	free(b->queues);
	free(b->slots);
	free(b->ringmap);
fail_b:
	free(b);
fail_fd:
	close(fd);
	return err;
}

int bus_open(const struct sbc_bus_open *req, const struct peer *p,
	     struct dbus **out, bool *created)
{
	struct dbus *b = bus_find(req->name);
	unsigned perms;

	*created = false;
	if (b) {
		if (req->flags & SBC_OPEN_EXCL)
			return -EEXIST;
		perms = bus_perms(b, p);
		if ((req->flags & SBC_OPEN_RDONLY) ? !(perms & 4) : !(perms & 6)) {
			log_info("bus '%s': uid %u pid %d denied (mode %04o)",
				 b->name, p->uid, p->pid, b->mode);
			return -EACCES;
		}
		*out = b;
		return 0;
	}
	if (!(req->flags & SBC_OPEN_CREATE))
		return -ENOENT;
	*created = true;
	return bus_create(req, p, out);
}

/* ---- ring storage: first fit over the daemon's unit bitmap ---------- */

static bool unit_used(const struct dbus *b, uint64_t u)
{
	return b->ringmap[u / 64] & (1ULL << (u % 64));
}

/* Mark units in our bitmap, and mirror them into the arena's for readers. */
void units_mark(const struct dbus *b, uint64_t first, uint64_t n,
		       bool used)
{
	for (uint64_t u = first; u < first + n; u++) {
		if (used)
			b->ringmap[u / 64] |= 1ULL << (u % 64);
		else
			b->ringmap[u / 64] &= ~(1ULL << (u % 64));
		WRITE_ONCE(b->arena.ringmap[u / 64], b->ringmap[u / 64]);
	}
}

int64_t units_alloc(const struct dbus *b, uint64_t n)
{
	uint64_t run = 0;

	for (uint64_t u = 0; u < b->arena.ring_units; u++) {
		run = unit_used(b, u) ? 0 : run + 1;
		if (run == n) {
			units_mark(b, u + 1 - n, n, true);
			return (int64_t)(u + 1 - n);
		}
	}
	return -ENOSPC;
}

static uint64_t ring_units_for(uint32_t cap)
{
	return ((uint64_t)cap * sizeof(struct shmbus_cell) + SHMBUS_RING_UNIT - 1) /
	       SHMBUS_RING_UNIT;
}

void dqueue_ring_level(const struct dbus *b, const struct dqueue *dq,
		       uint32_t level, struct ring *r)
{
	const struct arena *a = &b->arena;
	struct shmbus_queue *q = &a->queues[dq - b->queues];

	r->cells = (struct shmbus_cell *)(a->base + a->ring_off +
					  (dq->ring_first + level *
					   ring_units_for(dq->cap)) *
					  SHMBUS_RING_UNIT);
	r->tail = level ? &q->prio_tail[level - 1] : &q->tail;
	r->head = level ? &q->prio_head[level - 1] : &q->head;
	ring_geometry(r, dq->cap);
}

void dqueue_ring(const struct dbus *b, const struct dqueue *dq, struct ring *r)
{
	dqueue_ring_level(b, dq, 0, r);
}

/* ---- queues ------------------------------------------------------- */

int dqueue_find(const struct dbus *b, const char *name)
{
	for (uint32_t i = 0; i < b->arena.max_queues; i++)
		if (b->queues[i].live &&
		    !strncmp(b->queues[i].name, name, SHMBUS_NAME_MAX))
			return (int)i;
	return -ENOENT;
}

static void seats_close(struct dqueue *dq)
{
	for (uint32_t i = 0; i < dq->nr_seats; i++)
		if (dq->seat_fds[i] >= 0)
			close(dq->seat_fds[i]);
	free(dq->seat_fds);
	dq->seat_fds = NULL;
	dq->nr_seats = 0;
	memset(dq->seat_slot, 0, sizeof(dq->seat_slot));
}

/* Write a token to every seat in use (or every seat): wake-ups the
 * daemon owes after a delete or a dead producer. */
static void seats_kick(const struct dqueue *dq, bool all)
{
	static const uint64_t one = 1;

	for (uint32_t i = 0; i < dq->nr_seats; i++) {
		if (!all && !dq->seat_slot[i])
			continue;
		if (write(dq->seat_fds[i], &one, sizeof(one)) < 0)
			log_warn("seat %u eventfd write: %s", i, strerror(errno));
	}
}

static uint32_t roundup_pow2(uint32_t v)
{
	return v <= 2 ? 2 : 1u << (32 - __builtin_clz(v - 1));
}

/* Publish @dq's state in the arena descriptor @q, gen last (release). */
static void dqueue_publish(const struct dbus *b, const struct dqueue *dq,
			   struct shmbus_queue *q)
{
	const struct arena *a = &b->arena;

	memset((uint8_t *)q + sizeof(q->gen), 0, sizeof(*q) - sizeof(q->gen));
	if (dq->live) {
		q->ring_cap = dq->cap;
		q->max_len = dq->max_len;
		q->ring_off = a->ring_off + dq->ring_first * SHMBUS_RING_UNIT;
		q->msg_size = dq->msg_size;
		q->nr_seats = dq->nr_seats;
		q->created_ns = (uint64_t)realtime_ns();
		memcpy(q->name, dq->name, sizeof(q->name));
		q->flags = dq->expire_dlq ? SHMBUS_QF_EXPIRE_DLQ : 0;
		q->lease_ns = dq->lease_ns;
		q->ttl_ns = dq->ttl_ns;
		q->backoff_init_ns = dq->backoff_init_ns;
		q->backoff_max_ns = dq->backoff_max_ns;
		q->backoff_mult_milli = dq->backoff_mult_milli;
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
		if (dq->kind == DQ_TOPIC)
			q->flags |= SHMBUS_QF_TOPIC;
		if (dq->kind == DQ_SUB)
			q->flags |= SHMBUS_QF_SUB;
		if (dq->drop_oldest)
			q->flags |= SHMBUS_QF_DROP_OLDEST;
		q->history = dq->history;
		if (dq->fanout_units)
			q->fanout = (dq->fanout_first << 16) | dq->fanout_n;
	}
	/* release: everything above is visible to whoever sees the new gen
	 * (pairs with the acquire in arena_find_queue and attach) */
	smp_store_release(&q->gen, dq->gen);
}

#define DEF_LEASE_NS		(30 * NSEC_PER_SEC)
#define MAX_DURATION_NS		(365LL * 24 * 3600 * NSEC_PER_SEC)

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

static bool semantics_equal(const struct dqueue *a, const struct dqueue *b)
{
	return a->lease_ns == b->lease_ns && a->ttl_ns == b->ttl_ns &&
	       a->backoff_init_ns == b->backoff_init_ns &&
	       a->backoff_max_ns == b->backoff_max_ns &&
	       a->backoff_mult_milli == b->backoff_mult_milli &&
	       a->max_deliveries == b->max_deliveries &&
	       a->dlq_qid == b->dlq_qid && a->dlq_gen == b->dlq_gen &&
	       a->expire_dlq == b->expire_dlq &&
	       a->dedup_window_ns == b->dedup_window_ns &&
	       a->overflow == b->overflow && a->nr_prio == b->nr_prio;
}

bool dqueue_is(const struct dbus *b, uint32_t qid, uint32_t qgen)
{
	return qid < b->arena.max_queues && b->queues[qid].live &&
	       b->queues[qid].gen == qgen;
}

int queue_declare(struct dbus *b, const struct peer *p,
		  const struct sbc_queue_declare *req,
		  struct sbc_queue_declare_reply *rep)
{
	/* the bus owner declares queues; anyone who may both publish and
	 * consume may have a private reply queue */
	if (!is_owner(b, p) && !((req->flags & SBC_QUEUE_PRIVATE) &&
				 (bus_perms(b, p) & 6) == 6))
		return -EACCES;
	return queue_create(b, p, req, rep, 0);
}

int queue_create(struct dbus *b, const struct peer *p,
		 const struct sbc_queue_declare *req,
		 struct sbc_queue_declare_reply *rep, uint32_t kind)
{
	const struct arena *a = &b->arena;
	bool topic = req->flags & SBC_QUEUE_TOPIC;
	/* a topic's ring is its history (max_len messages, 0 = none) */
	uint32_t max_len = topic ? MAX(req->max_len, 2u)
			  : req->max_len ? req->max_len : DEF_MAX_LEN;
	uint32_t msg_size = req->msg_size ? req->msg_size : DEF_MSG_SIZE;
	uint32_t seats = topic ? 1 : req->max_consumers ? req->max_consumers
					    : DEF_MAX_CONSUMERS;
	uint32_t qid = UINT32_MAX;
	struct dqueue *dq;
	struct ring r;
	int64_t first;
	int id, *fds;

	struct dqueue cfg = { .dlq_qid = UINT32_MAX };

	if (topic)
		kind = DQ_TOPIC;
	if (max_len < 1 || max_len > SHMBUS_RING_MAX_CAP ||
	    seats < 1 || seats > SHMBUS_MAX_SEATS ||
	    (req->flags & ~SBC_QUEUE__ALL))
		return -EINVAL;
	id = queue_semantics(b, req, &cfg);
	if (id)
		return id;
	if (msg_size > a->pool[a->nr_pools - 1].payload_max) {
		log_info("queue '%s': msg_size %u exceeds the largest pool "
			 "payload %u", req->name, msg_size,
			 a->pool[a->nr_pools - 1].payload_max);
		return -EMSGSIZE;
	}

	id = dqueue_find(b, req->name);
	if (id >= 0) {
		dq = &b->queues[id];
		if (dq->kind != kind) {
			log_info("'%s' exists as a %s", req->name,
				 dq->kind == DQ_TOPIC ? "topic" :
				 dq->kind == DQ_SUB ? "subscription" : "queue");
			return -EEXIST;
		}
		if (dq->max_len != max_len || dq->msg_size != msg_size ||
		    dq->nr_seats != seats ||
		    (topic && dq->history != req->max_len)) {
			log_info("queue '%s' exists with max_len %u msg_size %u "
				 "max_consumers %u; declare asked for %u/%u/%u",
				 req->name, dq->max_len, dq->msg_size,
				 dq->nr_seats, max_len, msg_size, seats);
			return -EEXIST;
		}
		if (!semantics_equal(dq, &cfg)) {
			log_info("queue '%s' exists with other delivery "
				 "settings (lease, ttl, backoff, max "
				 "deliveries, dead-letter queue)", req->name);
			return -EEXIST;
		}
		rep->qid = id;
		rep->gen = dq->gen;
		rep->created = 0;
		return 0;
	}
	for (uint32_t i = 0; i < a->max_queues; i++) {
		if (!b->queues[i].live && !b->queues[i].reclaim_pending) {
			qid = i;
			break;
		}
	}
	if (qid == UINT32_MAX)
		return -ENOSPC;
	dq = &b->queues[qid];

	fds = malloc(seats * sizeof(int));
	if (!fds)
		return -ENOMEM;
	for (uint32_t i = 0; i < seats; i++) {
		/* blocking on purpose: a consumer with no timeout sleeps in
		 * a single read() (wake.c); writers never block */
		fds[i] = eventfd(0, EFD_CLOEXEC);
		if (fds[i] < 0) {
			int err = -errno;

			while (i--)
				close(fds[i]);
			free(fds);
			return err;
		}
	}
	dq->cap = roundup_pow2(max_len);
	dq->dedup_cap = 0;
	dq->dedup_units = 0;
	if (cfg.dedup_window_ns) {
		/* twice the capacity: keys outlive their messages */
		uint32_t dc = MAX(2 * dq->cap, 1024u);
		int64_t df;

		dq->dedup_units = ((uint64_t)dc * sizeof(struct shmbus_dedup) +
				   SHMBUS_RING_UNIT - 1) / SHMBUS_RING_UNIT;
		df = units_alloc(b, dq->dedup_units);
		if (df < 0) {
			for (uint32_t i = 0; i < seats; i++)
				close(fds[i]);
			free(fds);
			log_info("queue '%s': no storage left for a dedup "
				 "table of %u keys", req->name, dc);
			return -ENOSPC;
		}
		dq->dedup_first = (uint64_t)df;
		dq->dedup_cap = dc;
		memset(a->base + a->ring_off + df * SHMBUS_RING_UNIT, 0,
		       dq->dedup_units * SHMBUS_RING_UNIT);
	}
	first = units_alloc(b, ring_units_for(dq->cap) * cfg.nr_prio);
	if (first < 0) {
		if (dq->dedup_units)
			units_mark(b, dq->dedup_first, dq->dedup_units, false);
		dq->dedup_units = 0;
		dq->dedup_cap = 0;
		for (uint32_t i = 0; i < seats; i++)
			close(fds[i]);
		free(fds);
		log_info("queue '%s': no ring storage left for %u slots",
			 req->name, dq->cap);
		return -ENOSPC;
	}
	/* the descriptor is unused and no reader can still be looking at
	 * its old ring: its reclamation waited for a grace period */
	dq->live = true;
	memcpy(dq->name, req->name, sizeof(dq->name));
	dq->gen = (dq->gen + 1) | 1;		/* the next odd gen */
	dq->max_len = max_len;
	dq->msg_size = msg_size;
	dq->ring_first = (uint64_t)first;
	dq->ring_units = ring_units_for(dq->cap) * cfg.nr_prio;
	dq->seat_fds = fds;
	dq->nr_seats = seats;
	memset(dq->seat_slot, 0, sizeof(dq->seat_slot));
	dq->lease_ns = cfg.lease_ns;
	dq->ttl_ns = cfg.ttl_ns;
	dq->backoff_init_ns = cfg.backoff_init_ns;
	dq->backoff_max_ns = cfg.backoff_max_ns;
	dq->backoff_mult_milli = cfg.backoff_mult_milli;
	dq->max_deliveries = cfg.max_deliveries;
	dq->dlq_qid = cfg.dlq_qid;
	dq->dlq_gen = cfg.dlq_gen;
	dq->expire_dlq = cfg.expire_dlq;
	dq->dedup_window_ns = cfg.dedup_window_ns;
	dq->overflow = cfg.overflow;
	dq->nr_prio = cfg.nr_prio;
	dq->owner_conn = req->flags & SBC_QUEUE_PRIVATE ? p->conn_id : 0;
	dq->kind = kind;
	dq->history = topic ? req->max_len : 0;
	dq->fanout_units = dq->fanout_n = 0;
	dq->durable = dq->drop_oldest = false;
	memset(dq->pattern, 0, sizeof(dq->pattern));
	memset(dq->group, 0, sizeof(dq->group));
	for (uint32_t l = 0; l < dq->nr_prio; l++) {
		dqueue_ring_level(b, dq, l, &r);
		ring_init_cells(&r);	/* every cell empty, lap 0 */
	}
	a->queues[qid].head = a->queues[qid].tail = 0;
	memset(a->queues[qid].prio_tail, 0, sizeof(a->queues[qid].prio_tail));
	memset(a->queues[qid].prio_head, 0, sizeof(a->queues[qid].prio_head));
	dqueue_publish(b, dq, &a->queues[qid]);
	WRITE_ONCE(a->sb->dir_gen, a->sb->dir_gen + 1);
	rep->qid = qid;
	rep->gen = dq->gen;
	rep->created = 1;
	if (kind == DQ_TOPIC)
		fanout_refresh(b);	/* existing patterns may match it */
	log_info("bus '%s': queue '%s' declared (id %u, capacity %u, "
		 "msg_size %u, max_consumers %u)", b->name, dq->name, qid,
		 dq->cap, msg_size, seats);
	return 0;
}


int queue_delete(struct dbus *b, const struct peer *p,
		 const struct sbc_queue_delete *req)
{
	int id;

	id = dqueue_find(b, req->name);
	if (id < 0)
		return id;
	/* the bus owner, or the connection a private queue belongs to */
	if (!is_owner(b, p) && b->queues[id].owner_conn != p->conn_id)
		return -EACCES;
	dqueue_delete(b, id);
	return 0;
}

void dqueue_delete(struct dbus *b, int id)
{
	const struct arena *a = &b->arena;
	struct dqueue *dq = &b->queues[id];

	dq->live = false;
	dq->gen++;		/* even: every handle sees a gen it did not
				 * attach with, from the release store on */
	a->queues[id].flags |= SHMBUS_QF_DELETING;
	smp_store_release(&a->queues[id].gen, dq->gen);
	WRITE_ONCE(a->sb->dir_gen, a->sb->dir_gen + 1);
	/* sleeping consumers wake and find the queue gone (-EIDRM) */
	seats_kick(dq, true);
	timers_drop(b, (uint32_t)id);
	dq->reclaim_pending = true;
	dq->gp_target = epoch_gp_start(a);
	dq->owner_conn = 0;
	if (dq->kind == DQ_TOPIC)
		fanout_clear(b, (uint32_t)id);
	if (dq->kind != DQ_QUEUE)
		fanout_refresh(b);
	log_info("bus '%s': queue '%s' deleted; reclaiming after a grace "
		 "period", b->name, dq->name);
}

/* Free what a deleted queue held. Only after its grace period. */
static void queue_reclaim(struct dbus *b, uint32_t qid)
{
	const struct arena *a = &b->arena;
	struct dqueue *dq = &b->queues[qid];
	unsigned freed = 0;
	struct ring r;

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
	seats_close(dq);
	dq->reclaim_pending = false;
	dqueue_publish(b, dq, &a->queues[qid]);	/* gen stays even */
	log_info("bus '%s': queue id %u reclaimed (%u messages freed)",
		 b->name, qid, freed);
}

static bool slot_attached(void *ctx, uint32_t slot)
{
	const struct dbus *b = ctx;

	return slot < b->arena.max_slots && b->slots[slot].conn_id;
}

bool reclaim_tick(void)
{
	bool pending = sweep_tick();

	pending |= fanout_reclaim_tick();

	for (struct dbus *b = buses; b; b = b->next) {
		for (uint32_t i = 0; i < b->arena.max_queues; i++) {
			struct dqueue *dq = &b->queues[i];

			if (!dq->reclaim_pending)
				continue;
			if (epoch_gp_done(&b->arena, dq->gp_target,
					  slot_attached, b))
				queue_reclaim(b, i);
			else
				pending = true;
		}
	}
	return pending;
}

bool bus_gp_done(struct dbus *b, uint64_t target)
{
	return epoch_gp_done(&b->arena, target, slot_attached, b);
}

/* ---- slots -------------------------------------------------------- */

int slot_attach(struct dbus *b, const struct peer *p, unsigned perms,
		const struct sbc_attach *req, struct sbc_attach_reply *rep,
		int **fds, unsigned *nfds)
{
	const struct arena *a = &b->arena;
	uint32_t seat = UINT32_MAX, si = UINT32_MAX;
	struct shmbus_queue *q;
	struct shmbus_slot *s;
	struct dqueue *dq;
	struct dslot *ds;
	int id;

	if (req->kind != SHMBUS_KIND_PRODUCER && req->kind != SHMBUS_KIND_CONSUMER)
		return -EINVAL;
	if (!(perms & (req->kind == SHMBUS_KIND_PRODUCER ? 2 : 4)))
		return -EACCES;
	id = dqueue_find(b, req->name);
	if (id < 0)
		return id;
	q = &a->queues[id];
	dq = &b->queues[id];
	if ((dq->kind == DQ_TOPIC && req->kind == SHMBUS_KIND_CONSUMER) ||
	    (dq->kind == DQ_SUB && req->kind == SHMBUS_KIND_PRODUCER)) {
		log_info("'%s' is a %s: %s", dq->name,
			 dq->kind == DQ_TOPIC ? "topic" : "subscription",
			 dq->kind == DQ_TOPIC ? "subscribe to it"
					      : "publish to its topic");
		return -EPROTOTYPE;
	}
	if (req->kind == SHMBUS_KIND_CONSUMER) {
		for (uint32_t i = 0; i < dq->nr_seats; i++) {
			if (!dq->seat_slot[i]) {
				seat = i;
				break;
			}
		}
		if (seat == UINT32_MAX) {
			log_info("queue '%s': all %u consumer seats taken",
				 dq->name, dq->nr_seats);
			return -EUSERS;
		}
	}
	for (uint32_t i = 0; i < a->max_slots; i++) {
		if (!b->slots[i].conn_id) {
			si = i;
			break;
		}
	}
	if (si == UINT32_MAX) {
		log_info("bus '%s': all %u participant slots taken", b->name,
			 a->max_slots);
		return -EUSERS;
	}
	ds = &b->slots[si];
	ds->conn_id = p->conn_id;
	ds->gen++;
	ds->kind = req->kind;
	ds->qid = (uint32_t)id;
	ds->qgen = dq->gen;
	ds->seat = seat;
	ds->pid = p->pid;
	/* the arena copy, for the owner and for readers; written while the
	 * slot reads FREE, then published */
	s = &a->slots[si];
	s->gen = ds->gen;
	s->pid = (uint32_t)p->pid;
	s->start_time = p->start_time;
	s->kind = req->kind;
	s->qid = (uint32_t)id;
	s->qgen = dq->gen;
	s->seat = seat;
	s->rcu_epoch = 0;
	s->id_next = s->id_end = 0;
	memset(s->ctr, 0, sizeof(s->ctr));
	for (unsigned i = 0; i < SHMBUS_MAX_POOLS; i++)
		s->cache[i].count = 0;
	leases_reset(s);	/* seq keeps counting across owners */
	/* pairs with the acquire loads of state in attach(), stat and
	 * epoch_gp_done() */
	smp_store_release(&s->state, SHMBUS_SLOT_ACTIVE);
	if (seat != UINT32_MAX) {
		dq->seat_slot[seat] = si + 1;
		q->seat_slot[seat] = (uint16_t)(si + 1);
		WRITE_ONCE(q->seat_used[seat / 64],
			   q->seat_used[seat / 64] | (1ULL << (seat % 64)));
	}
	rep->qid = (uint32_t)id;
	rep->qgen = dq->gen;
	rep->slot = si;
	rep->slot_gen = ds->gen;
	rep->seat = seat;
	rep->nr_seats = dq->nr_seats;
	*fds = dq->seat_fds;
	*nfds = dq->nr_seats;
	log_debug("bus '%s': pid %d attached slot %u to '%s' as %s (seat %d)",
		  b->name, p->pid, si, dq->name,
		  req->kind == SHMBUS_KIND_PRODUCER ? "producer" : "consumer",
		  (int)seat);
	return 0;
}

/*
 * The owner of slot @si is gone (detached or dead): fold its counters into
 * its queue, return its cached and owned chunks, free its seat, and give
 * the queue's consumers a wake-up in case it died owing one. Everything is
 * decided from the daemon's record of the slot, not the arena's.
 */
static void slot_release(struct dbus *b, uint32_t si, bool died)
{
	const struct arena *a = &b->arena;
	struct shmbus_slot *s = &a->slots[si];
	struct dslot *ds = &b->slots[si];
	struct dqueue *dq = &b->queues[ds->qid];
	struct shmbus_queue *q = &a->queues[ds->qid];
	bool live = dq->live && dq->gen == ds->qgen;
	unsigned reclaimed;

	/* stat readers skip it from now on (counters not yet folded: a
	 * momentary undercount, never a double count) */
	smp_store_release(&s->state, SHMBUS_SLOT_DEAD);
	pool_drain_slot(a, s);
	if (ds->kind == SHMBUS_KIND_CONSUMER) {
		uint32_t cand[SHMBUS_LEASE_MAX];
		unsigned n = leases_release(b, si, cand);

		if ((died || n) && sweep_start(b, si, cand, n))
			server_want_tick();
	}
	reclaimed = pool_reclaim_owned(a, si);
	if (died && ds->kind == SHMBUS_KIND_PRODUCER &&
	    sweep_start(b, si, NULL, 0))
		server_want_tick();
	if (live) {
		for (unsigned i = 0; i < SHMBUS_NR_COUNTERS; i++)
			WRITE_ONCE(q->folded[i], q->folded[i] + READ_ONCE(s->ctr[i]));
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
		/* A producer killed between taking a sleeper's bit and
		 * writing its eventfd would leave that consumer asleep on a
		 * non-empty queue: wake every consumer of its queue (a
		 * spurious wake-up costs one read()). */
		if (died && ds->kind == SHMBUS_KIND_PRODUCER)
			seats_kick(dq, false);
	}
	if (reclaimed || died)
		log_info("bus '%s': slot %u of pid %d %s; %u chunks reclaimed",
			 b->name, si, (int)ds->pid, died ? "died" : "detached",
			 reclaimed);
	if (ds->kind == SHMBUS_KIND_CONSUMER && dq->kind == DQ_SUB) {
		ds->conn_id = 0;	/* not one of its consumers any more */
		sub_released(b, ds->qid, ds->qgen);
	}
	s->rcu_epoch = 0;
	s->seat = UINT32_MAX;
	ds->conn_id = 0;
	ds->seat = UINT32_MAX;
	smp_store_release(&s->state, SHMBUS_SLOT_FREE);
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

void conn_gone(uint32_t conn_id)
{
	for (struct dbus *b = buses; b; b = b->next) {
		bool any = false;

		for (uint32_t i = 0; i < b->arena.max_slots; i++) {
			if (b->slots[i].conn_id == conn_id) {
				slot_release(b, i, true);
				any = true;
			}
		}
		for (uint32_t i = 0; i < b->arena.max_queues; i++) {
			if (b->queues[i].live && b->queues[i].owner_conn == conn_id) {
				dqueue_delete(b, (int)i);
				any = true;
			}
		}
		if (any) {
			pools_rebuild(b);
			server_want_tick();
		}
	}
}

void buses_free(void)
{
	while (buses) {
		struct dbus *b = buses;

		buses = b->next;
		sweeps_drop(b);
		fanout_drop(b);
		timers_drop(b, UINT32_MAX);
		for (uint32_t i = 0; i < b->arena.max_queues; i++)
			if (b->queues[i].seat_fds)
				seats_close(&b->queues[i]);
		arena_unmap(&b->arena);
		close(b->fd);
		if (b->ro_fd >= 0)
			close(b->ro_fd);
		free(b->queues);
		free(b->slots);
		free(b->ringmap);
		free(b);
	}
}
