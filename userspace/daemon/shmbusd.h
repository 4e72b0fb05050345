/* SPDX-License-Identifier: MIT */
/*
 * shmbusd.h - the daemon's internal interfaces: logging (log.c), buses and
 * their queues and slots (busmgr.c), connections and frames (server.c).
 * One thread runs everything, so nothing here takes a lock.
 */
#ifndef SHMBUSD_H
#define SHMBUSD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h"
#include "proto.h"
#include "ring.h"

/* ---- log.c ------------------------------------------------------- */

enum { LOG_ERR_, LOG_WARN_, LOG_INFO_, LOG_DEBUG_ };
void dlog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int dlog_open(const char *path);	/* append to a file instead of stderr */
void dlog_set_level(int level);
#define log_err(...)	dlog(LOG_ERR_, __VA_ARGS__)
#define log_warn(...)	dlog(LOG_WARN_, __VA_ARGS__)
#define log_info(...)	dlog(LOG_INFO_, __VA_ARGS__)
#define log_debug(...)	dlog(LOG_DEBUG_, __VA_ARGS__)

/* ---- busmgr.c ---------------------------------------------------- */

/* Who is asking: credentials from SO_PEERCRED / SO_PEERGROUPS. */
struct peer {
	uint32_t conn_id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	uint64_t start_time;
	int ngroups;
	gid_t groups[64];
};

/*
 * The daemon's own records. Anything the daemon decides by or indexes
 * with (who owns the bus, which queues exist and where their rings are,
 * which slots and seats are taken, by whom) lives here and is only written
 * to the arena for readers: every attached process can write the arena,
 * so the daemon never reads those back.
 */
struct dqueue {
	bool live;		/* declared, not deleted */
	bool reclaim_pending;	/* deleted, waiting for a grace period */
	char name[SHMBUS_NAME_MAX];
	uint32_t gen;		/* as published in the arena (odd = live) */
	uint32_t max_len, msg_size, cap;
	uint64_t ring_first;	/* ring storage, in SHMBUS_RING_UNITs */
	uint64_t ring_units;
	int *seat_fds;		/* nr_seats eventfds, daemon's copies */
	uint32_t nr_seats;
	uint32_t seat_slot[SHMBUS_MAX_SEATS];	/* slot + 1, 0 = seat free */
	uint64_t gp_target;
	/* delivery semantics, as declared (defaults filled in) */
	uint64_t lease_ns, ttl_ns;
	uint64_t backoff_init_ns, backoff_max_ns;
	uint32_t backoff_mult_milli;
	uint32_t max_deliveries;	/* 0 = unlimited */
	uint32_t dlq_qid, dlq_gen;	/* UINT32_MAX = no DLQ */
	bool expire_dlq;
	uint64_t dedup_window_ns;
	uint32_t overflow;		/* SHMBUS_OVERFLOW_* */
	uint32_t nr_prio;		/* priority levels (rings), 1..4 */
	uint64_t dedup_first, dedup_units;	/* table storage, 0 units = none */
	uint32_t dedup_cap;
	uint32_t owner_conn;	/* private (reply) queue: deleted when this
				 * connection closes; 0 = none */
	/* topics and subscriptions (topics.c) */
	uint32_t kind;		/* DQ_QUEUE, DQ_TOPIC, DQ_SUB */
	uint32_t history;	/* topic: messages kept for late joiners */
	uint64_t fanout_first, fanout_units;	/* topic: fan-out array */
	uint32_t fanout_n;
	bool durable;		/* sub: stays without consumers */
	bool drop_oldest;	/* sub: slow subscriber policy */
	char pattern[SHMBUS_NAME_MAX];	/* sub */
	char group[SHMBUS_NAME_MAX];	/* sub; "" = exclusive */
};

enum { DQ_QUEUE = 0, DQ_TOPIC = 1, DQ_SUB = 2 };

struct dslot {
	uint32_t conn_id;	/* owning connection, 0 = slot free */
	uint32_t gen;		/* as published in the arena */
	uint32_t kind;		/* SHMBUS_KIND_* */
	uint32_t qid, qgen;
	uint32_t seat;		/* UINT32_MAX for producers */
	pid_t pid;
};

struct dbus {
	struct dbus *next;
	char name[SHMBUS_NAME_MAX];
	uid_t owner_uid;
	gid_t owner_gid;
	uint32_t mode;
	struct arena arena;
	int fd;			/* the arena: sealed memfd or file */
	int ro_fd;		/* read-only reopen, for RDONLY clients */
	struct dqueue *queues;	/* max_queues */
	struct dslot *slots;	/* max_slots */
	uint64_t *ringmap;	/* ring storage in use, 1 bit per unit */
};

/* The queue @dq as a ring over the arena (daemon numbers only); level 0. */
void dqueue_ring(const struct dbus *b, const struct dqueue *dq,
		 struct ring *r);
/* Priority level @level's ring (0 .. nr_prio - 1). */
void dqueue_ring_level(const struct dbus *b, const struct dqueue *dq,
		       uint32_t level, struct ring *r);

struct daemon_cfg {
	const char *arena_dir;	/* NULL: sealed memfds */
};

extern struct daemon_cfg dcfg;

/* Permission bits (r = consume, w = produce) @p has on @b. */
unsigned bus_perms(const struct dbus *b, const struct peer *p);

/* Find a bus, or create it (when @create); errors are -errno. */
int bus_open(const struct sbc_bus_open *req, const struct peer *p,
	     struct dbus **out, bool *created);

int queue_declare(struct dbus *b, const struct peer *p,
		  const struct sbc_queue_declare *req,
		  struct sbc_queue_declare_reply *rep);
int queue_delete(struct dbus *b, const struct peer *p,
		 const struct sbc_queue_delete *req);
/* Declare without the permission check, as a @kind (DQ_*; a TOPIC flag
 * in @req makes a topic). */
int queue_create(struct dbus *b, const struct peer *p,
		 const struct sbc_queue_declare *req,
		 struct sbc_queue_declare_reply *rep, uint32_t kind);
/* Delete queue @id now (its memory after a grace period). */
void dqueue_delete(struct dbus *b, int id);
int dqueue_find(const struct dbus *b, const char *name);
/* Ring units of the arena's ring area (busmgr.c). */
int64_t units_alloc(const struct dbus *b, uint64_t n);
void units_mark(const struct dbus *b, uint64_t first, uint64_t n, bool used);

/* ---- topics.c ---------------------------------------------------- */

int subscribe(struct dbus *b, const struct peer *p, unsigned perms,
	      const struct sbc_subscribe *req, struct sbc_attach_reply *rep,
	      int **fds, unsigned *nfds);
int unsubscribe(struct dbus *b, const struct peer *p,
		const struct sbc_unsubscribe *req);
int seats_request(struct dbus *b, unsigned perms, const struct sbc_seats *req,
		  struct sbc_seats_reply *rep, int **fds, unsigned *nfds);
/* Recompute every topic's fan-out set after a topic or subscription
 * came or went. */
void fanout_refresh(struct dbus *b);
/* A consumer slot of queue @qid was released: an ephemeral subscription
 * without consumers goes away. */
void sub_released(struct dbus *b, uint32_t qid, uint32_t qgen);
/* Free fan-out arrays whose grace period ended; true while some wait. */
bool fanout_reclaim_tick(void);
void fanout_drop(const struct dbus *b);
/* Topic @qid is being deleted: retire its fan-out array. */
void fanout_clear(struct dbus *b, uint32_t qid);

/* Attach: on success *fds and *nfds are the queue's seat fds (daemon-owned,
 * to be sent, not closed). */
int slot_attach(struct dbus *b, const struct peer *p, unsigned perms,
		const struct sbc_attach *req, struct sbc_attach_reply *rep,
		int **fds, unsigned *nfds);
int slot_detach(struct dbus *b, const struct peer *p,
		const struct sbc_detach *req);

/* A connection closed: release every slot it held on every bus. */
void conn_gone(uint32_t conn_id);

/* Advance pending queue reclamations and orphan sweeps; returns true
 * while some remain. */
bool reclaim_tick(void);

/* ---- reclaim.c --------------------------------------------------- */

/*
 * Slot @si died. A producer: look for chunks it filled but never
 * published (freed after a grace period). A consumer: for chunks it was
 * requeueing, and for @cand (@n refs its delivery table names that may
 * have been taken from a ring and not yet marked), which go back to the
 * queue after a grace period. True if a sweep is now pending.
 */
bool sweep_start(struct dbus *b, uint32_t si, const uint32_t *cand,
		 unsigned n);
/* Has the grace period @target of bus @b ended? */
bool bus_gp_done(struct dbus *b, uint64_t target);
/* Finish sweeps whose grace period ended; true while some remain. */
bool sweep_tick(void);
/* Forget the sweeps of a bus being torn down. */
void sweeps_drop(const struct dbus *b);
/* If nothing is attached to @b, relink its free lists from the chunks no
 * ring references, recovering any lost to kills. True if it did. */
bool pools_rebuild(struct dbus *b);

void buses_free(void);

/* ---- deliver.c --------------------------------------------------- */

/*
 * Deliveries the daemon looks after: lease expiry, redelivery with
 * backoff, dead-lettering, TTL of messages nobody receives, delayed
 * messages. Chunks it holds meanwhile are TIMED, owned by
 * SHMBUS_OWNER_DAEMON, and listed in its timer heap.
 */

/* Is queue @qid of @b live and still generation @qgen? */
bool dqueue_is(const struct dbus *b, uint32_t qid, uint32_t qgen);

/* A client hands over a chunk (SBC_DISPOSE). */
int dispose_request(struct dbus *b, const struct peer *p,
		    const struct sbc_dispose *req);

/* The consumer of slot @si is gone or detaching: every delivery in its
 * table goes back to the queue (leases) or is freed (auto-ack views).
 * Refs that may have been taken from a ring but not yet marked are
 * stored in @cand (up to SHMBUS_LEASE_MAX); returns how many. */
unsigned leases_release(struct dbus *b, uint32_t si, uint32_t *cand);

/* An empty delivery table for slot @s (seq keeps counting). */
void leases_reset(struct shmbus_slot *s);

/* Chunk @ref, which the daemon now owns (TIMED), failed a delivery on
 * queue (qid, qgen): requeue it (after the backoff, if @backoff) or
 * dead-letter it at max deliveries. */
void redeliver(struct dbus *b, uint32_t qid, uint32_t qgen, uint32_t ref,
	       bool backoff);

/* Periodic work; returns the CLOCK_MONOTONIC time it wants to run again
 * (INT64_MAX: only when something happens). */
int64_t deliver_tick(int64_t now);

/* Mark chunks the daemon holds (pools_rebuild must not free them). */
void timers_mark(const struct dbus *b, uint8_t *bits, const uint64_t *pool_base);

/* Forget timers of queue @qid of @b (deleted: their chunks are freed),
 * or of the whole bus (qid UINT32_MAX: torn down, nothing freed). */
void timers_drop(struct dbus *b, uint32_t qid);

/* ---- server.c ---------------------------------------------------- */

int server_run(int listen_fd);

/* ---- the kernel module (kmod.c) ----------------------------------- */

/* Open /dev/shmbus as $SHMBUS_KMOD says: its fd, 0 when not used, or
 * -errno when required and absent. */
int kmod_init(void);
int kmod_fd(void);			/* -1 when not used */
void kmod_watch(struct dbus *b);	/* death notice for a new bus */
uint64_t kmod_cookie(void);		/* a connection's; 0 without kmod */
/* Death records waiting: up to @max (cookie, pid) pairs; 0 if none. */
int kmod_read(uint64_t *cookies, uint32_t *pids, int max);
void server_stop(void);
/* Run the periodic work (reclaim_tick, deliver_tick) soon. */
void server_want_tick(void);

#endif /* SHMBUSD_H */
