/* SPDX-License-Identifier: MIT */
/*
 * shmbusd.h - the daemon's internal interfaces, one section per file that
 * defines them. One thread runs everything, so nothing here takes a lock.
 *
 * The daemon's records (struct dbus, dqueue, dslot) are what it decides
 * by. Every attached process can write the arena, so what the daemon
 * publishes there (queue descriptors, slot states) is for readers only and
 * is never read back to make a decision - except once, by a daemon that
 * adopts the bus after its predecessor died (adopt.c), which rebuilds
 * its records from it, checking every field.
 */
#ifndef SHMBUSD_H
#define SHMBUSD_H

#include <stdbool.h>
#include <stdint.h>
#include <limits.h>
#include <sys/types.h>

#include "internal.h"
#include "journal.h"
#include "proto.h"
#include "ring.h"

struct dbus;
struct policy;

/* ---- main.c ---------------------------------------------------------- */

/* The daemon's state: main() owns the one instance and passes it down. */
struct daemon {
	struct dbus *buses;	/* every bus, newest first */
	uint64_t memory_max;	/* --memory-max: all arenas; 0 = no limit */
	uint64_t bus_max;	/* --bus-max: one arena */
	int64_t handshake_ns;	/* --handshake-timeout */
	unsigned max_pending;	/* --max-pending */
	unsigned max_pending_uid;	/* --max-pending-uid */
	uint32_t instance;	/* names this daemon's arenas: a hash of
				 * its socket path (adopt.c) */
	const char *policy_path;	/* NULL: no policy file */
	bool policy_must;	/* --policy given: the file must exist */
	struct policy *policy;	/* the rules in force (NULL: none) */
	/* the geometry of a bus whose creator left it to the daemon
	 * (--bus-queues, --bus-slots, --bus-ring-size, --bus-pools; 0: the
	 * library's defaults) */
	struct arena_params bus_defaults;
};

/* ---- options.c: the command line and shmbusd.conf ------------------- */

/* What main() needs of the settings besides struct daemon. */
struct options {
	const char *sock;	/* absolute */
	const char *logpath;
	bool daemonize;
	const char *state_dir;	/* --state-dir, absolute; NULL: default */
	uint64_t segment_bytes;	/* --segment-size; 0: default */
	const char *config_path;	/* the file read, NULL: none */
	char sockbuf[108];
	char logbuf[PATH_MAX];
	char regbuf[160];	/* the registry: <socket>.buses */
	char policybuf[PATH_MAX];
	char policyabs[PATH_MAX];
	char statedirbuf[PATH_MAX];
	char statebuf[PATH_MAX];
	char configbuf[PATH_MAX];
	char cwdbuf[PATH_MAX];
};

/*
 * The settings: the configuration file (--config FILE, else the default
 * one if it exists, unless --no-config), then the command line over it,
 * into @o and @d. Returns -1 to go on, else the exit code (0 after
 * --help, 2 for a bad option or file, 1 for a path too long).
 */
int options_parse(int argc, char **argv, struct options *o,
		  struct daemon *d);

/* ---- memory.c: the daemon-wide memory budget for arenas ------------- */

/*
 * May an arena of @size bytes be made now? 0; -EDQUOT over a configured
 * limit (--bus-max, --memory-max); -ENOMEM when the daemon's memory cgroup
 * or the host (MemAvailable) has not the room. @why says which.
 */
int memory_admit(const struct daemon *d, uint64_t size, char *why,
		 size_t len);
/* May a bus that holds @have bytes take @add more (its pools grow)? As
 * memory_admit(), --bus-max bounding have + add. */
int memory_admit_more(const struct daemon *d, uint64_t have, uint64_t add,
		      char *why, size_t len);
/* Log the budget as it stands (at start). */
void memory_describe(const struct daemon *d);

/* ---- quota.c: per-uid quotas ------------------------------------------ */

enum quota_res { Q_BUSES, Q_BYTES, Q_QUEUES, Q_SEATS, Q_CONNS, Q_DISK,
		  Q__NR };

#define QUOTA_UNLIMITED		UINT64_MAX
#define QUOTA_SHARE_DEFAULT	25	/* percent of the daemon's fds, memory */
#define QUOTA_TOTAL_SHARE_DEFAULT 75	/* the same, for all users together */

/* --quota "buses=N,bytes=N[KMGT],queues=N,seats=N,conns=N" (any subset,
 * N or "unlimited"), --quota-share PERCENT (per uid) and
 * --quota-total-share PERCENT (every non-exempt uid together): 0 or
 * -EINVAL. */
int quota_parse(const char *spec);
int quota_set_share(const char *percent);
int quota_set_total_share(const char *percent);
/* Fill the limits not given from @nofile (our RLIMIT_NOFILE) and memory. */
void quota_init(uint64_t nofile);
void quota_free(void);
bool quota_exempt(uid_t uid);
uint64_t quota_limit(enum quota_res r);
uint64_t quota_use(uid_t uid, enum quota_res r);
/* Charge @n of @r to @uid without a limit: what an adopted bus already
 * holds (logged when it is over the limit). */
void quota_force(uid_t uid, enum quota_res r, uint64_t n);
/* Does @uid hold all of its @r, or all users together theirs? (For what
 * grows without a request to refuse: journals on disk.) */
bool quota_full(uid_t uid, enum quota_res r);
const char *quota_name(enum quota_res r);
/* Charge @n of @r to @uid (request of @pid): 0, or -EDQUOT (logged, and
 * the reason kept for quota_why()) when it would pass the limit. Exempt
 * uids are never charged, and releases for them are no-ops. */
int quota_charge(uid_t uid, pid_t pid, enum quota_res r, uint64_t n);
/* The same, for the daemon's own growth: not logged (quota_why() says
 * why not). */
int quota_charge_quiet(uid_t uid, enum quota_res r, uint64_t n);
void quota_release(uid_t uid, enum quota_res r, uint64_t n);
/* The last refusal's text ("quota: seats 512 of 512 for uid 1000 ..."),
 * "" after quota_why_clear(). */
const char *quota_why(void);
void quota_why_clear(void);

/* ---- log.c ----------------------------------------------------------- */

enum { LOG_ERR_, LOG_WARN_, LOG_INFO_, LOG_DEBUG_ };
void dlog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int dlog_open(const char *path);	/* append to a file instead of stderr */
void dlog_set_level(int level);
#define log_err(...)	dlog(LOG_ERR_, __VA_ARGS__)
#define log_warn(...)	dlog(LOG_WARN_, __VA_ARGS__)
#define log_info(...)	dlog(LOG_INFO_, __VA_ARGS__)
#define log_debug(...)	dlog(LOG_DEBUG_, __VA_ARGS__)

/* ---- policy.c: who may do what on which bus ------------------------- */

enum policy_op {
	POLICY_CREATE,		/* create a bus (in one's own namespace) */
	POLICY_CONFIGURE,	/* declare and delete queues and topics */
	POLICY_PUBLISH,		/* attach producers, wake subscribers */
	POLICY_CONSUME,		/* attach consumers, (un)subscribe, read */
	POLICY__OP_MAX,
};

/* A bus as a decision sees it: its namespace (owner) and name, group and
 * mode bits (for a bus being created: the creator's). */
struct bus_ref {
	uid_t owner_uid;
	gid_t owner_gid;
	uint32_t mode;
	const char *name;
};

struct peer;
/*
 * Read the policy file @path into *@out. An absent file is no rules
 * unless @must_exist. On error *@out is NULL and @err says why, as
 * "path:line: what" for a malformed line.
 */
int policy_load(const char *path, bool must_exist, struct policy **out,
		char *err, size_t len);
void policy_free(struct policy *pol);
unsigned policy_rules(const struct policy *pol);
const char *policy_op_name(enum policy_op op);
/*
 * May @p do @op on @bus? Root always; else the first matching rule of
 * @pol (may be NULL); else the default (own namespace for create, the
 * owner configures, mode bits w publish and r consume). 0, or -EACCES
 * with @why saying which rule (file:line) or which default refused.
 */
int policy_check(const struct policy *pol, const struct peer *p,
		 const struct bus_ref *bus, enum policy_op op,
		 char *why, size_t len);
/* (Re)read d->policy_path (start, SIGHUP): 0, or -errno with the error
 * (file:line) logged and the policy in force kept. */
int daemon_policy_reload(struct daemon *d);

/* ---- server.c: the event loop and its connections -------------------- */

/* Who is asking: credentials from SO_PEERCRED / SO_PEERGROUPS. */
struct peer {
	uint32_t conn_id;
	uint64_t token;		/* the connection's name in the arena
				 * (slot conn_token): random, nonzero */
	pid_t pid;
	uid_t uid;
	gid_t gid;
	uint64_t start_time;
	int ngroups;
	gid_t *groups;		/* groups_inline, or malloc()ed for more */
	gid_t groups_inline[64];
};

/* Serve connections on @listen_fd until SIGTERM/SIGINT; SIGHUP rereads
 * the policy (daemon_policy_reload()). */
int server_run(struct daemon *d, int listen_fd);
/* Leave the loop (clients keep their slots: the arena is theirs). */
void server_stop(void);
/* Run the periodic work (deliver_tick, defer_tick) soon, or at @when
 * (CLOCK_MONOTONIC) at the latest. */
void server_want_tick(void);
void server_want_tick_at(int64_t when);
/* Close connection @conn_id after the current batch, as its EOF would,
 * logging its pid and uid and @why. */
void server_conn_evict(uint32_t conn_id, const char *why);
/*
 * Connections of a daemon that died, as a daemon adopting its buses
 * finds them in the arena: a "ghost" is a connection without a socket,
 * owning what the old connection of token @token owned, watched through a
 * pidfd of its process (@pid, with start time @start_time; 0 = unknown,
 * then the pid's existence is all there is), a member of bus @b. Returns the ghost's conn_id
 * (the same for every call with that token), or 0 if that process is
 * gone: what it owned is released at once.
 */
uint32_t server_ghost(struct dbus *b, uint64_t token, pid_t pid,
		      uint64_t start_time);
/* @p rejoined bus @b with old token @token: if the ghost of that token
 * on @b is the same process (pid and start time), end the ghost and return
 * its conn_id (the caller moves what it owned to @p); else 0. */
uint32_t server_ghost_take(const struct dbus *b, uint64_t token,
			   const struct peer *p);
/* Call @fn for every process bound to a bus (connections and ghosts),
 * in one pass over the connections. */
typedef void member_fn(void *ctx, const struct dbus *b, pid_t pid,
		       uint64_t start_time);
void server_each_member(member_fn *fn, void *ctx);
/* The processes bound to bus @b (connections and ghosts): how many, the
 * first @cap of their pids in @pids. */
unsigned server_bus_members(const struct dbus *b, pid_t *pids, unsigned cap);
/* Unbind every connection and ghost of @b, closing them after this
 * batch with @why (a deleted bus): nothing refers to @b after this. */
void server_bus_evict(const struct dbus *b, const char *why);

/* ---- dispatch.c: one request, by the table of frame types ------------ */

/* What a connection has established in its conversation. */
struct session {
	struct peer peer;
	bool hello;		/* HELLO done */
	bool rdonly;		/* bound read-only */
	bool refused;		/* over its uid's conns quota: its first
				 * frame is answered -EDQUOT, then closed */
	struct dbus *bus;	/* bound by BUS_OPEN, else NULL */
	uint64_t kmod_cookie;	/* its name in the module's death records */
};

/*
 * Read one packet of session @s from @fd and answer it: check the frame,
 * dispatch the request, send the reply (server.c). False when the
 * connection must be closed: EOF, a receive error, a protocol error, a
 * reply that cannot be sent. The event loop's whole handling of a packet,
 * also driven by the fuzzer (tests/fuzz/) over a socketpair.
 */
bool session_read(struct daemon *d, int fd, struct session *s);

/* A request being answered. */
struct request {
	struct daemon *d;
	struct session *s;
	const struct sbc_hdr *hdr;
	const void *body;	/* hdr->type's request struct */
	void *rep;		/* hdr->type's reply struct, zeroed */
	size_t rep_len;		/* its size */
	int *fds;		/* file descriptors to send, daemon-owned */
	unsigned nfds;
	int *in_fds;		/* received with the request (REJOIN,
				 * SEATS_GIVE): a handler keeps one by
				 * setting it to -1; the rest are closed */
	unsigned in_nfds;
	bool fatal;		/* close the connection after the reply */
	char reason[SBC_REASON_MAX];	/* a refusal's text, "" = none */
};

/* Explain the refusal @r is about to return: the text goes to the client
 * with the failing reply (shmbus_errmsg() there). */
void req_reason(struct request *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The request body size of frame type @type, or -1 for an unknown type. */
long request_body_size(unsigned type);
/* May a request of @type carry file descriptors? (REJOIN, SEATS_GIVE) */
bool request_takes_fds(unsigned type);

/* Check and carry out @r (header already validated by the caller).
 * Returns the reply status; fills r->rep, rep_len, fds, nfds, fatal. */
int dispatch(struct request *r);

/* ---- defer.c: freeing after a grace period -------------------------------- */

/*
 * The one way the daemon frees arena memory that readers in other
 * processes may still be looking at (a deleted queue's ring, a topic's old
 * fan-out array, a dead process's possible orphans): defer(b, h, fn)
 * starts a grace period of bus @b, and defer_tick(b) calls fn(b, h, true)
 * once every process attached to @b has left the read-side sections it
 * was in (epoch.h), the shape of urcu's call_rcu(). The caller embeds @h
 * in whatever it frees, so deferring cannot fail. When the bus is torn
 * down first, defer_drop(b) calls fn(b, h, false): free @h's container,
 * touch nothing in the arena.
 */
struct defer_head;
typedef void defer_fn(struct dbus *b, struct defer_head *h, bool gp_over);

struct defer_head {
	struct defer_head *next;
	uint64_t gp;		/* grace period target (epoch_gp_start) */
	defer_fn *fn;
};

void defer(struct dbus *b, struct defer_head *h, defer_fn *fn);
/* Run the callbacks whose grace period ended; true while some wait.
 * A connection whose slot holds a grace period, inside the same
 * read-side section, for GP_HOLD_MAX_NS is closed. */
bool defer_tick(struct dbus *b, int64_t now);
#define GP_HOLD_MAX_NS		(2 * NSEC_PER_SEC)
void defer_drop(struct dbus *b);

/* ---- bus.c: buses ------------------------------------------------------ */

/*
 * A queue, topic or subscription, as the daemon knows it. Topics and
 * subscriptions are entries of the same directory (topics.c).
 */
enum dqueue_kind { DQ_QUEUE = 0, DQ_TOPIC = 1, DQ_SUB = 2, DQ_INTAKE = 3 };

struct dur;

struct dqueue {
	bool live;		/* declared, not deleted */
	bool reclaim_pending;	/* deleted, its memory not yet reclaimed */
	char name[SHMBUS_NAME_MAX];
	uint32_t gen;		/* as published in the arena (odd = live) */
	uint32_t max_len, msg_size, cap;
	uint64_t ring_first;	/* ring storage, in SHMBUS_RING_UNITs */
	uint64_t ring_units;
	int *seat_fds;		/* nr_seats eventfds, daemon's copies; -1 until
				 * a consumer first takes the seat */
	uint32_t nr_seats;
	uint32_t seat_epoch;	/* eventfds made so far (published) */
	uid_t quota_uid;	/* charged a queue and nr_seats seats */
	uint32_t seat_slot[SHMBUS_MAX_SEATS];	/* slot + 1, 0 = seat free */
	struct defer_head reclaim;	/* queue.c: after delete */
	/* delivery semantics, as declared (defaults filled in) */
	uint64_t lease_ns, ttl_ns;
	uint64_t backoff_init_ns, backoff_max_ns;
	uint32_t backoff_mult_milli;
	uint32_t max_deliveries;	/* 0 = unlimited */
	uint32_t dlq_qid, dlq_gen;	/* UINT32_MAX = no DLQ */
	bool expire_dlq;
	bool checksum;		/* messages carry a CRC32C (QF_CHECKSUM) */
	bool damaged;		/* quarantined (repair.c): ring beyond repair */
	uint8_t strikes;	/* repair.c: checks in a row that found its
				 * ring inconsistent */
	uint64_t created_ns;	/* as published (CLOCK_REALTIME) */
	uint64_t dedup_window_ns;
	uint32_t overflow;		/* SHMBUS_OVERFLOW_* */
	uint32_t nr_prio;		/* priority levels (rings), 1..4 */
	uint64_t timed;		/* timers.c: its entries in the heap
				 * (published as the descriptor's timed) */
	uint64_t dedup_first, dedup_units;	/* table storage, 0 units = none */
	uint32_t dedup_cap;
	uint32_t owner_conn;	/* private (reply) queue: deleted when this
				 * connection closes; 0 = none */
	uint64_t owner_token;	/* that connection's token (published) */
	/* topics and subscriptions (topics.c) */
	enum dqueue_kind kind;
	uint32_t history;	/* topic: messages kept for late joiners */
	uint64_t fanout_first, fanout_units;	/* topic: fan-out array */
	uint32_t fanout_n;
	bool durable;		/* sub: stays without consumers */
	bool drop_oldest;	/* sub: slow subscriber policy */
	char pattern[SHMBUS_NAME_MAX];	/* sub */
	char group[SHMBUS_NAME_MAX];	/* sub; "" = exclusive */
	/* durable.c: a persistent queue (DQ_QUEUE) and its intake
	 * (DQ_INTAKE, same name, the one its producers are bound to) */
	uint32_t intake;	/* queue: its intake's qid + 1; intake: its
				 * queue's qid + 1; 0 = none */
	uint32_t sync;		/* SHMBUS_JSYNC_* */
	uint64_t sync_interval_ns;	/* SHMBUS_JSYNC_BATCH */
	struct dur *dur;	/* queue: its journal; NULL = in memory only */
	/* deliver.c: a message waiting while a consumer sleeps */
	int64_t stall_since;	/* first seen at this head, 0 = not */
	uint64_t stall_head;	/* the head positions then */
};

/* A participant slot: one producer or consumer handle of a client. */
struct dslot {
	uint32_t conn_id;	/* owning connection, 0 = slot free */
	uint32_t gen;		/* as published in the arena */
	uint32_t role;		/* SHMBUS_ROLE_* */
	uint32_t qid, qgen;
	uint32_t seat;		/* UINT32_MAX for producers */
	pid_t pid;
	/* reclaim.c claims_held(): the run last seen noted, and since */
	uint64_t run_from;
	uint32_t run_n;
	int64_t run_since;
	bool sweeping;		/* dead, kept DEAD until the sweep of what it
				 * may have been taking is over (reclaim.c):
				 * a daemon killed meanwhile leaves the
				 * names in its table to the next one */
	/* defer.c: the section (rcu_epoch value) this slot was seen holding
	 * a grace period in, under slot gen held_gen, since held_since */
	uint64_t held;
	uint32_t held_gen;
	int64_t held_since;
};

/* A chunk the daemon holds until it is due (timers.c). */
struct timer {
	int64_t due;
	uint32_t qid, qgen, ref;
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
	struct defer_head *deferred;	/* defer.c: waiting for a grace period */
	struct defer_head **deferred_tail;
	unsigned sweeps;	/* reclaim.c: orphan sweeps pending */
#define SWEEPS_MAX	64	/* beyond which attach says -EAGAIN */
	struct timer *timers;	/* timers.c: a min-heap by due time */
	size_t nr_timers, timers_cap;
	uint64_t excl_seq;	/* topics.c: names of exclusive subscriptions */
	unsigned nconns;	/* connections bound to it */
	/* repair.c: the superblock's constant lines and each pool
	 * descriptor's, as formatted; repairs and quarantines so far */
	uint8_t sb_copy[256] __attribute__((aligned(8)));
	uint8_t pool_copy[SHMBUS_MAX_POOLS][64] __attribute__((aligned(8)));
	uint32_t repairs, quarantined;
	int64_t repair_next;
	int64_t claims_next;	/* reclaim.c: the next claims_sweep() of all */
	bool fd_stored;		/* fdstore.c: the service manager has a copy */
	/* grow.c: bytes of the arena that are backed (all but the reserve
	 * its pools may grow into); per pool, when a refused growth is
	 * tried again and what the refusal was (logged once) */
	uint64_t committed;
	int64_t grow_retry[SHMBUS_MAX_POOLS];
	int grow_err[SHMBUS_MAX_POOLS];
};

/* ---- grow.c: pools that grow ---------------------------------------- */

/* Back (fallocate) the parts of the fresh arena in @fd that the arena of
 * @ap has when made: all but the reserve its pools may grow into. */
int arena_back(int fd, const struct arena_params *ap);
/* The daemon takes the pools of @b: @made (formatted just now), with the
 * counts it made them with; adopted, with what the memfd holds of each
 * (never the arena's word). Sets its counts and b->committed. */
void pools_take(struct dbus *b, bool made);
/* Grow the pools of @b that are running out, as admitted. Returns when
 * to come back for a refused one (INT64_MAX: none). */
int64_t pools_tick(struct daemon *d, struct dbus *b, int64_t now);

/* The bus called @name in the namespace of uid @owner, or NULL. */
struct dbus *bus_find(const struct daemon *d, uid_t owner, const char *name);
/* Create the bus @req names, owned by @p (the caller checked that it
 * may): 0 or -errno (a refusal's reason in @r). */
int bus_create(struct daemon *d, const struct sbc_bus_open *req,
	       const struct peer *p, struct dbus **out, struct request *r);
/* @b as policy_check() sees it. */
struct bus_ref bus_ref_of(const struct dbus *b);
/* Connection @conn_id closed: release its slots and private queues on
 * every bus. */
void buses_conn_gone(struct daemon *d, uint32_t conn_id);
/* Tear every bus down (daemon exit; clients keep their mappings). */
void buses_free(struct daemon *d);
/*
 * Delete bus @b (the caller checked who asks, and that its members may
 * go): its queues and their journals, its members' connections, its
 * state directory, its place in the fd store, its owner's charges; its
 * arena says it is deleted. @b is freed. The reply says what it had.
 */
void bus_delete(struct daemon *d, struct dbus *b,
		struct sbc_bus_delete_reply *rep);
/* Live queues (topics, subscriptions) of @b, and of them persistent
 * (@durable may be NULL). */
void bus_count_queues(const struct dbus *b, uint32_t *queues,
		      uint32_t *durable);
/*
 * The name the daemon gives the memfd of an arena (fixed at creation,
 * the identity a later daemon trusts, adopt.c):
 * "shmbus:INSTANCE:UID:GID:MODE:BUSID:NAME", numbers in hex but MODE
 * (octal) and UID, GID (decimal).
 */
/* Log the geometry a bus gets when its creator leaves it open. */
void bus_defaults_describe(const struct daemon *d);
void arena_memfd_name(const struct daemon *d, const struct arena_params *ap,
		      uint32_t bus_id, char *buf, size_t len);
/* The daemon's record of the arena in @fd (ours from here on; closed on
 * error): mapped, a read-only fd for RDONLY clients, empty tables. */
int bus_record(int fd, const struct arena_params *ap, struct dbus **out);
/* Free a record bus_record() made that was never linked. */
void bus_destroy(struct dbus *b);
/* Link @b in, as a bus the daemon serves (charged to its owner). */
void bus_link(struct daemon *d, struct dbus *b);

/* ---- adopt.c: taking over the buses of a daemon that died ---------------- */

/*
 * Adopt the arena in @fd (not consumed; the daemon keeps its own dup),
 * coming from @source (for the log: "fd store", "pid 123", ...): 0 with
 * *@out the bus (adopted now, or the bus already known with that very
 * arena), or -errno with @why saying why it was refused (logged):
 * -EACCES not an arena of this daemon's making, -EPROTONOSUPPORT another
 * layout version, -EEXIST another live bus has that identity, -EUCLEAN
 * it does not validate, -EIDRM the bus was deleted.
 */
int bus_adopt(struct daemon *d, int fd, const char *source, struct dbus **out,
	      char *why, size_t len);
/* What fd @fd of process @pid (0: ours) is, as /proc/PID/fd shows it
 * ("anon_inode:[eventfd]", "/memfd:NAME (deleted)", ...), into @buf: 0
 * or -errno. */
int fd_link(pid_t pid, int fd, char *buf, size_t len);
/* Connection @p rejoined and was ghost @ghost: its slots and private
 * queues on @b are @p's now (records and the arena's tokens). */
void bus_rehome(struct dbus *b, uint32_t ghost, const struct peer *p);
/* At start: find the arenas of this daemon's instance that live processes
 * hold (/proc/PID/fd), pull each with pidfd_getfd() and adopt it. Those it
 * cannot pull are remembered as held: see adopt_pending(). */
void adopt_scan(struct daemon *d);
/* Is a bus (@owner, @name) held by a live process that has not given it
 * back yet? Then a BUS_OPEN must wait (-EINPROGRESS) rather than make a
 * second bus of that name. */
bool adopt_pending(uid_t owner, const char *name);
/* Forget the held-bus records (daemon exit). */
void adopt_fini(void);
/*
 * The registry: every bus and the processes bound to it, in a file the
 * daemon keeps beside its socket (@path). After adopt_scan(),
 * adopt_registry_load() marks the buses it lists that were not adopted
 * and still have a live member as held (a process a non-root daemon
 * cannot look into: one that made itself non-dumpable). The server saves
 * it (adopt_registry_save()) after an event loop batch that bound or
 * closed a connection.
 */
void adopt_registry_load(struct daemon *d, const char *path);
void adopt_registry_save(const struct daemon *d);

/* ---- storage.c: the ring area of an arena ----------------------------- */

/* Units (SHMBUS_RING_UNIT bytes) for rings, dedup tables and fan-out
 * arrays, first fit over the daemon's bitmap (mirrored in the arena for
 * readers). units_alloc: the first unit, or -ENOSPC. */
int64_t units_alloc(const struct dbus *b, uint64_t n);
void units_mark(const struct dbus *b, uint64_t first, uint64_t n, bool used);
/* Units that hold @bytes. */
uint64_t units_for(uint64_t bytes);
/* Free units [first, first + n) after a grace period: readers in other
 * processes may still be looking at them. */
void units_retire(struct dbus *b, uint64_t first, uint64_t n);
/* Is unit @u in use? */
bool units_used(const struct dbus *b, uint64_t u);
/* The arena address of unit @u. */
void *unit_addr(const struct dbus *b, uint64_t u);

/* ---- queue.c: queues -------------------------------------------------- */

/* Declare (dispatch.c checked that @p may), as a @kind (a TOPIC flag in @req
 * makes a topic). Exists with the same settings: 0, rep->created 0. */
/* Why the last declare of an existing queue was refused: each setting
 * that differs, in one line ("" when it was not). */
const char *declare_why(void);
int queue_create(struct dbus *b, const struct peer *p,
		 const struct sbc_queue_declare *req,
		 struct sbc_queue_declare_reply *rep, enum dqueue_kind kind);
/* Delete queue @id now; its memory is reclaimed after a grace period. */
void dqueue_delete(struct dbus *b, int id);
/* Deleted queue @qid (reclaim_pending, as adopted): reclaim its memory
 * after a grace period. */
void dqueue_reclaim_later(struct dbus *b, uint32_t qid);
/* Publish @dq's settings in its arena descriptor (not gen). */
void dqueue_republish(struct dbus *b, uint32_t qid);
/* A live queue's id by name, or -ENOENT. */
int dqueue_find(const struct dbus *b, const char *name);
/* The fields of descriptor @q that the daemon sets from record @dq at
 * declare (all but gen, counters, hints, seats; zero for a free one):
 * what dqueue_publish() writes and repair.c restores. */
void dqueue_image(const struct dbus *b, const struct dqueue *dq,
		  struct shmbus_queue *q);
/* Is queue @qid of @b live and still generation @qgen? */
bool dqueue_is(const struct dbus *b, uint32_t qid, uint32_t qgen);
/* Priority level @level's ring of @dq (0 .. nr_prio - 1), from the
 * daemon's numbers only. */
void dqueue_ring_level(const struct dbus *b, const struct dqueue *dq,
		       uint32_t level, struct ring *r);
/* Write a token to every seat in use (or every seat, @all): wake-ups the
 * daemon owes after a delete or a dead producer. */
void seats_kick(const struct dqueue *dq, bool all);
void seats_close(struct dqueue *dq);
/* Make the eventfd of @seat of queue @qid if it has none yet (a consumer
 * is taking it): 0 or -errno. It stays until the queue is reclaimed. */
int seat_fd_make(struct dbus *b, uint32_t qid, uint32_t seat);
/* The eventfds @dq has made, in seat order, into *@fds (a static array,
 * valid until the next call) and their seats into @map; returns how many. */
unsigned seat_fds_of(const struct dqueue *dq, uint64_t map[SHMBUS_SEAT_WORDS],
		     int **fds);

/* ---- slot.c: participant slots ------------------------------------------ */

/* SBC_ATTACH: on success *fds and *nfds are the queue's seat fds
 * (daemon-owned, to be sent, not closed). @perms here and below: what
 * dispatch.c's policy check allowed (2 publish, 4 consume). */
int slot_attach(struct dbus *b, const struct peer *p, unsigned perms,
		const struct sbc_attach *req, struct sbc_attach_reply *rep,
		int **fds, unsigned *nfds);
/* SBC_DETACH. */
int slot_detach(struct dbus *b, const struct peer *p,
		const struct sbc_detach *req);
/* The owner of slot @si is gone (detached, or dead if @died). */
void slot_release(struct dbus *b, uint32_t si, bool died);
/* The sweep of dead consumer slot (@si, @gen) is over: the slot is free. */
void slot_swept(struct dbus *b, uint32_t si, uint32_t gen);
/* Is slot @slot of bus @ctx attached? (epoch_gp_done's callback) */
bool slot_attached(void *ctx, uint32_t slot);

/* ---- topics.c: subscriptions and fan-out sets ---------------------------- */

int subscribe(struct dbus *b, const struct peer *p, unsigned perms,
	      const struct sbc_subscribe *req, struct sbc_attach_reply *rep,
	      int **fds, unsigned *nfds, struct request *r);
/* Make subscription @name (PATTERN#GROUP) as @req asks, persistent
 * (durable.c) if it says so; no consumer. Its qid, or -errno (the reason
 * in @r). */
int sub_create(struct dbus *b, const struct peer *p,
	       const struct sbc_subscribe *req, const char *name,
	       struct request *r);
int unsubscribe(struct dbus *b, const struct peer *p,
		const struct sbc_unsubscribe *req);
int seats_request(struct dbus *b, unsigned perms, const struct sbc_seats *req,
		  struct sbc_seats_reply *rep, int **fds, unsigned *nfds);
/* Recompute every topic's fan-out set after a topic or subscription
 * came or went. */
void fanout_refresh(struct dbus *b);
/* Topic @qid is being deleted: retire its fan-out array. */
void fanout_clear(struct dbus *b, uint32_t qid);
/* A consumer slot of queue @qid was released: an ephemeral subscription
 * without consumers goes away. */
void sub_released(struct dbus *b, uint32_t qid, uint32_t qgen);

/* ---- reclaim.c: what a killed process leaves in flight -------------------- */

/*
 * Slot @si died. A producer: look for chunks it filled but never
 * published (freed after a grace period). A consumer: for chunks it was
 * requeueing, and for @cand (@n refs its delivery table names that may
 * have been taken from a ring and not yet marked), which go back to the
 * queue after a grace period. True if candidates wait for one (then
 * slot_swept() is called when it is over).
 */
bool sweep_start(struct dbus *b, uint32_t si, const uint32_t *cand,
		 unsigned n);
/*
 * Cells of queue @qid (CLAIMS_ALL: of every queue) that a claimer who is
 * gone left full behind a ring's head: after a grace period, those still
 * so are retired and their messages put back (redelivered).
 */
#define CLAIMS_ALL	UINT32_MAX
void claims_sweep(struct dbus *b, uint32_t qid);
/*
 * Consumer slot @si is being released: the part of its noted run it did
 * not take goes back at once, at its place in the queue when nobody
 * claimed after it (the head is set back), else as redeliveries.
 */
void claims_release(struct dbus *b, uint32_t si);
/*
 * In the tick, for attached consumer slot @si: a run it has held
 * unchanged for RUN_HOLD_NS goes back as claims_release() gives it (a
 * consumer that stopped receiving holds no messages, nor cells, for
 * longer). It may go on taking what nobody took meanwhile.
 */
#define RUN_HOLD_NS	(20 * NSEC_PER_MSEC)
void claims_held(struct dbus *b, uint32_t si, int64_t now);
/* If nothing is attached to @b, relink its free lists from the chunks no
 * ring references, recovering any lost to kills. True if it did. */
bool pools_rebuild(struct dbus *b);
/* An adopted bus: the chunks its dead daemon held (TIMED) go back on
 * their timers (returns how many); those it was putting into a ring
 * (QUEUED, in none) are requeued after a grace period, by their hold
 * records. */
unsigned adopt_held(struct dbus *b);

/* ---- repair.c: restoring what a peer scribbled, quarantining queues ------- */

/* Take the copies repair works from: right after formatting, before the
 * arena fd leaves the daemon. */
void repair_record(struct dbus *b);
/* Restore the superblock and pool descriptors from the daemon's records;
 * with REPAIR_QUEUES every queue descriptor too; with REPAIR_RINGS also
 * check every live queue's ring hints (and quarantine a queue whose ring
 * stays beyond repair). Logged; returns how many structures were
 * repaired (0: nothing was damaged). */
#define REPAIR_QUEUES	0x1u
#define REPAIR_RINGS	0x2u
unsigned bus_repair(struct dbus *b, unsigned what);
/* bus_repair(b, true) if its period is over; when it is due next. */
int64_t repair_tick(struct dbus *b, int64_t now);

/* ---- timers.c: chunks the daemon holds until they are due ----------------- */

/* How long a message waits for room in a full ring before it tries again. */
#define RETRY_FULL_NS		(5 * NSEC_PER_MSEC)

/*
 * Write chunk @c's hold record (layout.h): queue (qid, qgen) at @due, for
 * owner generation @gen. Before any change of its owner to TIMED, and
 * whenever the daemon re-arms it, so that a daemon killed at any point
 * leaves every chunk it holds findable by the next one.
 */
void hold_note(struct shmbus_chunk *c, uint32_t gen, uint32_t qid,
	       uint32_t qgen, int64_t due);
/* Hold @ref (TIMED, ours) for queue (qid, qgen) until @due. */
void timer_add(struct dbus *b, uint32_t qid, uint32_t qgen, uint32_t ref,
	       int64_t due);
/* Fire every timer due at @now; returns the next due time or INT64_MAX. */
int64_t timers_run(struct dbus *b, int64_t now);
/* Forget the timers of queue @qid (deleted: their chunks are freed), or
 * of the whole bus (qid UINT32_MAX: torn down, nothing freed). */
void timers_drop(struct dbus *b, uint32_t qid);
/* Mark the chunks the timers hold in @bits (pools_rebuild must not free
 * them); @pool_base: each pool's first bit. */
void timers_mark(const struct dbus *b, uint8_t *bits, const uint64_t *pool_base);

/* ---- dedup.c: a dead producer's PENDING dedup keys ------------------------ */

/* Producer slot @si died: its keys whose chunk it still has LOANED never
 * went in (forgotten). Before its chunks are reclaimed. One pass over the
 * table and one over the chunks. */
void dedup_dead_producer(struct dbus *b, uint32_t si);
/* The orphan sweep freed chunks of dead slot (si, gen) with dedup keys
 * @keys (@nkeys of them, 0s skipped; sorted here): those keys never went
 * in (forgotten). One pass over the table. */
void dedup_orphans(struct dbus *b, uint32_t qid, uint32_t qgen, uint32_t si,
		   uint32_t gen, uint64_t *keys, unsigned nkeys);
/* The sweep of dead slot (si, gen) is over: its keys still PENDING went
 * in (seen for the window, from now). */
void dedup_settle(struct dbus *b, uint32_t qid, uint32_t qgen, uint32_t si,
		  uint32_t gen);

/* ---- deliver.c: moving chunks the daemon holds ---------------------------- */

/*
 * Chunk @ref, which the daemon now owns (TIMED), failed a delivery on
 * queue (qid, qgen): requeue it (after the backoff, if @backoff) or
 * dead-letter it at max deliveries.
 */
void redeliver(struct dbus *b, uint32_t qid, uint32_t qgen, uint32_t ref,
	       bool backoff);
/* Dead-letter @ref (ours) from queue @qid with @reason, or drop it. */
void dead_letter(struct dbus *b, uint32_t qid, uint32_t ref, uint32_t reason);
/* Put @ref (ours) into the ring of queue @qid; false if it is full. */
bool ring_put(struct dbus *b, uint32_t qid, uint32_t ref);
/* Wake one sleeping consumer of @qid, after a cmpxchg that put a message
 * where consumers look. */
void dq_wake(struct dbus *b, uint32_t qid);
/* A consumer of @qid left (detached or died), maybe owing a wake-up it
 * was given: if a message waits, wake one sleeping consumer. */
void queue_pass_wake(struct dbus *b, uint32_t qid);
/* Free a chunk the daemon holds (or drop its reference to a shared one). */
void chunk_drop(struct dbus *b, uint32_t ref);
/* Add @n to counter @ctr of queue @qid (the daemon's own counts). */
void fold(struct dbus *b, uint32_t qid, unsigned ctr, uint64_t n);
/* SBC_DISPOSE: a client hands over a chunk. */
int dispose_request(struct dbus *b, const struct peer *p,
		    const struct sbc_dispose *req);
/* The periodic work of bus @b: timers, lease expiry, TTL. Returns the
 * CLOCK_MONOTONIC time it wants to run again (INT64_MAX: only when
 * something happens). */
int64_t deliver_tick(struct dbus *b, int64_t now);

/* ---- lease.c: deliveries a consumer holds ------------------------------- */

/* The consumer of slot @si is gone or detaching: every delivery in its
 * table goes back to the queue (leases) or is freed (auto-ack views).
 * Refs that may have been taken from a ring but not yet marked are
 * stored in @cand (up to SHMBUS_LEASE_MAX); returns how many. */
unsigned leases_release(struct dbus *b, uint32_t si, uint32_t *cand);
/* Empty every entry of slot @s's delivery table but those whose bit is
 * set in @keep (NULL: all). */
void leases_reset_but(struct shmbus_slot *s, const uint64_t *keep);
/* Expired leases of live consumer slot @si: taken back and redelivered. */
void leases_expire(struct dbus *b, uint32_t si, int64_t now);
/* An empty delivery table for slot @s (seq keeps counting). */
void leases_reset(struct shmbus_slot *s);

/* ---- kmod.c: the kernel module ------------------------------------------- */

/* Open /dev/shmbus as $SHMBUS_KMOD says: its fd, 0 when not used, or
 * -errno when required and absent. */
int kmod_init(void);
int kmod_fd(void);			/* -1 when not used */
void kmod_watch(struct dbus *b);	/* death notice for a new bus */
/* Bus @b was deleted: the module lets go of it and its records. */
void kmod_unwatch(struct dbus *b);
uint64_t kmod_cookie(void);		/* a connection's; 0 without kmod */
/* Death records waiting: up to @max (cookie, pid) pairs; 0 if none. */
int kmod_read(uint64_t *cookies, uint32_t *pids, int max);

/* ---- fdstore.c: systemd's notify socket and file descriptor store -------- */

/* First thing at start: take the fds the service manager passed
 * (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES). Returns a listening AF_UNIX
 * seqpacket socket among them (socket activation) or -1. */
int fdstore_take(void);
/* Before accepting: open $NOTIFY_SOCKET (if @notify), take or make the
 * state memfd, and adopt the arenas passed. Logged; nothing here stops
 * the daemon. */
void fdstore_start(struct daemon *d, bool notify);
/* Bus @b was created or adopted: its arena and trusted copies go to the
 * store (once per bus; nothing without a notify socket). */
void fdstore_bus(struct daemon *d, struct dbus *b);
/* The daemon's count of pool @pi of @b changed (it grew): into the state
 * memfd's record, which a daemon adopting the bus from the store trusts. */
void fdstore_pool_count(const struct dbus *b, unsigned pi);
/* The buses came or went: the status line the service manager shows. */
void fdstore_status(const struct daemon *d);
/* Bus @b was deleted (already unlinked from @d): out of the store. */
void fdstore_bus_gone(const struct daemon *d, struct dbus *b);
/* READY=1 (listening, passed arenas adopted), STOPPING=1. */
void fdstore_ready(const struct daemon *d);
void fdstore_stopping(void);
void fdstore_close(void);

/* ---- durable.c: persistent queues ------------------------------------------- */

/* A confirm waiting for the sync that covers journal position pos. */
struct pend {
	uint64_t pos;
	uint64_t id;		/* the slot's messages up to this id */
	uint32_t slot, gen;
	int err;		/* nonzero: they failed */
};

/* A persistent queue's journal and what waits for it (dqueue.dur). */
struct dur {
	struct journal *j;
	uint32_t qid;		/* the queue it is the journal of */
	char dir[PATH_MAX];
	struct pend *pend;	/* confirms waiting for a sync */
	size_t npend, pcap;
	uint64_t sync_token;	/* the sync running for us, 0 = none */
	int64_t dirty_since;	/* first write no sync covers yet, 0 none */
	int64_t gc_next;
	uint64_t poll_id;	/* the entry the deep walk resumes at */
	unsigned unloaded;	/* live entries without a chunk */
	uint64_t failed, written, syncs;
	int64_t last_sync;	/* when the last sync was started */
	/* journaled chunks taken from the intake that found the queue full
	 * (a consumer's nack took the room): they go in first, in order,
	 * before anything more is taken from the intake (intake.c) */
	uint32_t *backlog;
	unsigned nback, backcap;
	uid_t uid;		/* the bus owner's: its disk quota */
	uint64_t charged;	/* journal bytes charged to it */
	bool blocked;		/* the queue was full, the intake not empty:
				 * the tick looks again every millisecond */
};

/* At start, before any bus is adopted: the daemon's eventfd; @dir the
 * state directory (NULL: no durable queues), @seg_bytes the journals'
 * segment size (0: the default). */
int durable_setup(const char *dir, uint64_t seg_bytes);
/* The daemon's eventfd (intakes and finished syncs) and its handler. */
int durable_fd(void);
void durable_run(struct daemon *d);
/* Settles, syncs due, housekeeping of @b's journals; the next time wanted. */
int64_t durable_tick(struct dbus *b, int64_t now);
/* @b's pools grew: messages of its durable queues that wait on disk for
 * chunks are loaded at the next tick. */
void durable_room(struct dbus *b, int64_t now);
/* QUEUE_DECLARE with SBC_QUEUE_DURABLE (dispatch.c checked the caller). */
int durable_declare(struct dbus *b, const struct peer *p,
		    const struct sbc_queue_declare *req,
		    struct sbc_queue_declare_reply *rep, struct request *r);
/* Subscription @qid, just made as @req asks (SBC_SUB_PERSISTENT): its
 * intake, journal and state, as for a durable queue. */
int durable_subscribe(struct dbus *b, const struct peer *p, uint32_t qid,
		      const struct sbc_subscribe *req, struct request *r);
/* Queue @qid was deleted: its intake too, its journal removed. */
void durable_deleted(struct dbus *b, uint32_t qid);
/* @ref (ours) is being dead-lettered from @qid into @dlq: into the DLQ's
 * journal first if it is persistent (0 or -errno: then it is dropped). */
int durable_dead_letter(struct dbus *b, uint32_t qid, uint32_t dlq,
			uint32_t ref);
/* @ref (ours) left persistent queue @qid by the daemon's hand (dead-letter,
 * drop): settled in its journal. */
void durable_left(struct dbus *b, uint32_t qid, uint32_t ref, uint32_t reason);
/* Bus @b is torn down (daemon exit): journals flushed, synced, closed. */
void durable_bus_free(struct dbus *b);
void durable_fini(void);
/* For the family (intake.c, recover.c): open @qid's journal in @dir as
 * declared by @req; link queue @qid with its intake @iq; start a sync of
 * @du's journal if none runs; the journal's numbers into the arena. */
int dur_open(struct dbus *b, uint32_t qid, const char *dir,
	     const struct sbc_queue_declare *req);
void dur_intake_link(struct dbus *b, uint32_t qid, uint32_t iq);
void dur_disk_charge(struct dur *du);
void dur_sync_submit(struct dur *du);
/* When @du's journal may be synced next (INT64_MAX: nothing to sync), and
 * start that sync now if it may (else the tick does then). */
int64_t dur_sync_when(const struct dqueue *dq, const struct dur *du);
void dur_sync_maybe(struct dbus *b, uint32_t qid, int64_t now);
void dur_stats_publish(struct dbus *b, uint32_t qid);

/* CLOCK_MONOTONIC @mono as CLOCK_REALTIME and back, at the moment the
 * clocks read @now and @rt (0 stays 0: "none"). The journal keeps
 * wall-clock times: they mean something after a reboot. */
static inline uint64_t to_rt(uint64_t mono, int64_t now, int64_t rt)
{
	return mono ? (uint64_t)MAX(rt + ((int64_t)mono - now), 1) : 0;
}

static inline uint64_t to_mono(uint64_t realt, int64_t now, int64_t rt)
{
	return realt ? (uint64_t)MAX(now + ((int64_t)realt - rt), 1) : 0;
}

/* ---- intake.c: what producers put into a persistent queue ------------------ */

/* One batch of persistent queue @qid's intake: journaled, written, handed
 * over to the queue, its producers' confirms queued. How many it took,
 * or -EAGAIN: the queue has no room (left in the intake: producers see
 * the queue full; the tick tries again). */
int intake_batch(struct dbus *b, uint32_t qid);
/* Chunks waiting for room in @qid (the backlog, or recovered ones), in
 * order: 0 when all went in. */
int intake_backlog_flush(struct dbus *b, uint32_t qid);
/* Chunk @ref (TIMED, ours, journaled in @qid) into the queue after what
 * waits already. */
void intake_put(struct dbus *b, uint32_t qid, uint32_t ref);
/* Free the backlog of @qid (deleted). */
void intake_backlog_drop(struct dbus *b, uint32_t qid);
/* Sleep on @qid's intake; true if a message is there already. */
bool intake_arm(struct dbus *b, uint32_t qid);
/* Every intake of every bus, within a budget; true if work is left. */
bool intake_drain_all(struct daemon *d);
/* Adopted queue @qid: its intake journaled and synced, every producer
 * confirmed up to the last id it had taken. */
void intake_confirm_all(struct dbus *b, uint32_t qid);
/* Producer slot (@si, @gen): messages up to @id confirmed, or failed with
 * @err; confirms of @du covered by position @upto. */
void slot_confirm(struct dbus *b, uint32_t si, uint32_t gen, uint64_t id,
		  int err);
void pend_flush(struct dbus *b, struct dur *du, uint64_t upto);
/* The message in chunk @ref (@c) as a journal record, its lengths checked
 * against its pool; false if its header is garbage. */
bool chunk_jmsg(const struct dbus *b, uint32_t ref, struct shmbus_chunk *c,
		struct jmsg *m, int64_t now, int64_t rt);
/* A delayed publish (DISPOSE, chunk @ref now ours) by producer slot @si
 * (@ds): if it is bound to a persistent queue's intake, journaled (and
 * synced as the queue's policy says) with its due time and held for the
 * queue, the slot confirmed, and true; false: not persistent. */
bool durable_delayed(struct dbus *b, const struct dslot *ds, uint32_t si,
		     uint32_t ref, int64_t delay_ns);

/* ---- syncer.c: the sync thread ------------------------------------------------ */

void syncer_init(int efd);
/* Sync @s (from journal_sync_begin(), copied) on the thread; its result
 * comes back by syncer_collect() under *@token, announced on the eventfd. */
int syncer_post(const struct jsync *s, uint64_t *token);
typedef void syncer_done_fn(void *ctx, uint64_t token, struct jsync *s,
			    int err, int64_t ns);
/* Each finished sync: @fn ends its jsync (journal_sync_end or jsync_drop). */
void syncer_collect(syncer_done_fn *fn, void *ctx);
/* Close the fds of a sync whose journal is gone. */
void jsync_drop(struct jsync *s);
void syncer_fini(void);

/* ---- statedir.c: the state directory --------------------------------------- */

int statedir_set(const char *dir);
const char *statedir_path(void);	/* NULL: none */
/* Ours to use (created, locked)? Else statedir_why() says why not. */
bool statedir_ready(void);
const char *statedir_why(void);
void statedir_fini(void);
int statedir_mkdirs(const char *path);
/* Is file name @s a valid bus or queue name? */
bool statedir_name_ok(const char *s);
/* DIR/UID/BUS and DIR/UID/BUS/queues/QUEUE into @buf: 0 or -errno. */
int statedir_bus_of(uid_t uid, const char *name, char *buf, size_t len);
int statedir_bus(const struct dbus *b, char *buf, size_t len);
int statedir_queue(const struct dbus *b, const char *q, char *buf,
		   size_t len);
/* bus.conf of @b (written only if it changed), and read back from @dir
 * into a BUS_OPEN request and the group. */
int statedir_bus_save(const struct dbus *b);
/* Remove @b's directory (bus.conf; its queues' journals are gone). */
void statedir_bus_remove(const struct dbus *b);
int statedir_bus_load(const char *dir, struct sbc_bus_open *req, gid_t *gid);
/* queue.conf in @dir: the declare of queue @name, and for a persistent
 * subscription its subscribe (@sub non-NULL; *@is_sub on load). */
int statedir_queue_save(const char *dir, const struct sbc_queue_declare *q,
			const struct sbc_subscribe *sub);
int statedir_queue_load(const char *dir, const char *name,
			struct sbc_queue_declare *q, struct sbc_subscribe *sub,
			bool *is_sub);
/* Is file name @s one a queue or subscription directory may have? */
bool statedir_entry_ok(const char *s);

/* ---- recover.c: durable queues come back ------------------------------------ */

/* After adoption at start: make again every bus of the state directory
 * that is not served, from its journals (a reboot). */
void durable_recover(struct daemon *d);
/* BUS_OPEN of a bus the daemon does not know: recovered from the state
 * directory into *@out (1), or not there (0). */
int durable_bus_open(struct daemon *d, uid_t uid, const char *name,
		     struct dbus **out);
/* Adopted bus @b: reattach its persistent queues' journals. */
void durable_adopted(struct dbus *b);
struct load_ctx {
	struct dbus *b;
	uint32_t qid;
	int64_t now, rt;
	unsigned loaded, unloaded, bad;
	uint64_t max_id;
};
/* Load what of @qid's journal is not in the arena yet, in queue order,
 * while chunks last (@lc: how it went); the bus's ids continue above. */
void recover_load(struct dbus *b, uint32_t qid, struct load_ctx *lc);
/* The dedup keys of @qid's journal still in their window, back into its
 * intake's table. */
void recover_keys(struct dbus *b, uint32_t qid);

#endif /* SHMBUSD_H */
