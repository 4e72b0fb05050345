/* SPDX-License-Identifier: MIT */
/*
 * bridge.h - shmbus-bridge: what its files share.
 *
 * The bridge links a bus to a broker of another kind (RabbitMQ, over
 * AMQP 0-9-1) by routes. Each route runs on its own thread with its own
 * connection to the broker, so a slow or broken route holds up no other
 * and each keeps the simple, blocking shape of one loop:
 *
 *   out  a local queue (or a topic pattern, through a persistent
 *        subscription) -> a broker exchange and routing key; the local
 *        message is acked only after the broker's publisher confirm.
 *   in   a broker queue -> a local queue or topic; the broker's delivery
 *        is acked only after the local publish succeeded (and, for a
 *        durable local queue, was confirmed).
 *
 * Requests cross both ways (rpc.c): two routes of the bridge's own carry
 * the replies, rpc.replies.in (our broker reply queue -> the local
 * requesters) and rpc.replies.out (our local reply queue -> the broker
 * requests' reply_to).
 *
 * Messages cross in a neutral form (struct br_msg); a broker is a table
 * of operations on a link (struct br_broker), so a second broker kind is
 * one more table, and map.c, out.c and in.c stay as they are.
 */
#ifndef SHMBUS_BRIDGE_H
#define SHMBUS_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmbus.h>

#include "barrier.h"	/* READ_ONCE, atomic_add_relaxed, ... */

/*
 * USDT probes of this program (provider "shmbus", docs/probes.md):
 *   bridge_forward(route name, dir, count)
 *   bridge_confirm(route name, dir, count, latency ns)
 * dir is 0 for out, 1 for in; a confirm's latency is the oldest of the
 * messages it settles, from its forward. Without semaphores: a probe is
 * a nop, next to a round trip to the broker.
 */
#ifdef SHMBUS_NO_PROBES
#define BR_PROBE_FORWARD(w, n)		do { (void)(w); (void)(n); } while (0)
#define BR_PROBE_CONFIRM(w, n, ns)	\
	do { (void)(w); (void)(n); (void)(ns); } while (0)
#else
/* registers or constants only: what libbpf's USDT support reads */
#define STAP_SDT_ARG_CONSTRAINT nr
#include <sys/sdt.h>
#define BR_PROBE_FORWARD(w, n)						\
	STAP_PROBE3(shmbus, bridge_forward, (w)->route->name,		\
		    (int)(w)->route->dir, (uint64_t)(n))
#define BR_PROBE_CONFIRM(w, n, ns)					\
	STAP_PROBE4(shmbus, bridge_confirm, (w)->route->name,		\
		    (int)(w)->route->dir, (uint64_t)(n), (int64_t)(ns))
#endif

#define BR_NAME_MAX	256	/* broker names: exchange, key, queue */
#define BR_LOCAL_MAX	64	/* local names: 1..63 bytes */
#define BR_MAX_WINDOW	1024	/* messages in flight per route at most */
#define BR_MAX_HEADERS	48
#define BR_MAX_ROUTES	64
#define BR_BACKOFF_MIN_MS	100
#define BR_BACKOFF_MAX_MS	10000
#define BR_DRAIN_MS	5000	/* at a stop: wait this long for confirms */
#define BR_CONNECT_S	5	/* TCP connect timeout */
#define BR_HEARTBEAT_S	10	/* default heartbeat: a silent peer is
				 * given up after two of them */
#define BR_STATS_MS	1000	/* the stats file is written this often */
#define BR_KEY_MIN	32	/* a signing key's bytes, at least */
#define BR_KEY_MAX	1024

/* ---- configuration (conf.c) ---------------------------------------- */

enum br_dir { BR_OUT, BR_IN };

/* How an inbound route's broker queue is declared: not at all (it must
 * exist), as a durable classic queue, or as a quorum queue. */
enum br_declare { BR_DECLARE_NONE, BR_DECLARE_CLASSIC, BR_DECLARE_QUORUM };

/* A route the bridge adds for request-reply (rpc.c) */
enum br_rpc_role {
	BR_RPC_NONE,
	BR_RPC_REPLIES_IN,	/* in: the broker reply queue -> requesters */
	BR_RPC_REPLIES_OUT,	/* out: our local reply queue -> AMQP
				 * reply_to of each request */
};

/* A shared key to sign (out) or verify (in) messages with; len 0: none. */
struct br_key {
	size_t len;
	unsigned char b[BR_KEY_MAX];
};

struct br_route {
	char name[64];		/* for logs and counters */
	enum br_dir dir;
	enum br_rpc_role rpc;
	unsigned window;	/* messages in flight, 1..BR_MAX_WINDOW */

	/* out: the local side */
	char from_queue[BR_LOCAL_MAX];	/* or "" */
	char from_topic[BR_LOCAL_MAX];	/* a pattern, or "" */
	char group[BR_LOCAL_MAX];		/* its persistent group */
	/* out: the broker side; the key may name {topic} and {queue} */
	char exchange[BR_NAME_MAX];
	char key[BR_NAME_MAX];

	/* in: the broker side */
	char queue[BR_NAME_MAX];
	enum br_declare declare;
	char dlx[BR_NAME_MAX];		/* x-dead-letter-exchange, or "" */
	char dlx_key[BR_NAME_MAX];	/* x-dead-letter-routing-key, or "" */
	char bind_exchange[BR_NAME_MAX];/* bind the queue to it, or "" */
	char bind_key[BR_NAME_MAX];
	/* in: the local side, one of them; a topic may name {key} (the
	 * delivery's routing key) */
	char to_queue[BR_LOCAL_MAX];
	char to_topic[BR_LOCAL_MAX];

	struct br_key sign;	/* its own sign-key, else the global one */
	/* in: the largest body the bus can take (main.c); a delivery over
	 * it is not read into memory but rejected. 0 = any */
	size_t max_body;
};

struct br_conf {
	char url[1024];		/* amqp://... or amqps://... */
	char user[256], pass[256];	/* from --credentials, or "" */
	/* amqps://: the CA to verify the broker with (default: the
	 * system's), a client certificate and its key, or no checks */
	char tls_ca[512], tls_cert[512], tls_key[512];
	bool tls_insecure;
	struct br_key sign;	/* sign-key: for every route without one */
	char bus[BR_LOCAL_MAX];	/* "" = $SHMBUS_BUS or "default" */
	/* request-reply (rpc.c): the broker queue our requests' replies
	 * come to ("none": requests are not carried), the local queue the
	 * replies to the broker's requests come to, how long we wait */
	char reply_queue[BR_NAME_MAX];
	char local_reply_queue[BR_LOCAL_MAX];
	unsigned reply_timeout_ms;
	unsigned heartbeat;	/* seconds, 0 = none */
	bool no_start;		/* start-daemon = false */
	unsigned nr_routes;
	struct br_route routes[BR_MAX_ROUTES];
};

/* Parse @argv (options, and --config FILE) into @conf; on an error print
 * it and exit 2. */
void br_conf_parse(struct br_conf *conf, int argc, char **argv);

/* Read "USER:PASS" from @path into @conf (exit 2 on an error, also when
 * other users may read the file). */
void br_conf_credentials(struct br_conf *conf, const char *path);

/* ---- counters ------------------------------------------------------ */

struct br_stats {
	uint64_t forwarded;	/* publishes made (again after a
					 * give-back counts again) */
	uint64_t confirmed;	/* settled at the source after the
					 * destination took them */
	uint64_t nacked;	/* given back to the source */
	uint64_t redelivered;	/* received marked as redelivered */
	uint64_t reconnects;	/* connections after the first */
	uint64_t inflight;	/* now */
	uint64_t lag;		/* now: out, messages waiting in the local
				 * queue; in, ready in the broker queue */
	uint64_t blocked;	/* now: 1 while the broker blocks us */
	uint64_t blocks;	/* times the broker blocked us */
	uint64_t extended;	/* local leases extended while the broker
				 * was slow to confirm */
	uint64_t rejected;	/* in: deliveries that failed verification */
};

/* ---- messages in neutral form (map.c) ------------------------------- */

struct br_kv {
	const char *key;
	size_t klen;
	const void *val;
	size_t vlen;
};

/*
 * A message between the two sides: pointers into the source's memory
 * (a shmbus view, or a broker delivery), valid while that is held; the
 * small strings are copied.
 */
struct br_msg {
	const void *body;
	size_t len;
	/* AMQP short strings: up to 255 bytes. A message id is the local
	 * dedup id: cut short, two messages would be one */
	char message_id[BR_NAME_MAX];	/* "" = none */
	char correlation_id[BR_NAME_MAX];	/* "" = none */
	char reply_to[BR_NAME_MAX];	/* "" = none */
	int64_t expiration_ms;		/* < 0 = none */
	uint32_t delivery_count;	/* 0 = unknown */
	bool redelivered;
	unsigned nr_headers;
	struct br_kv headers[BR_MAX_HEADERS];
	char routing_key[BR_NAME_MAX];	/* a delivery's */
	char exchange[BR_NAME_MAX];	/* a delivery's */
	uint64_t tag;			/* a delivery's tag on its link */
	bool too_large;			/* a delivery's body over its route's
					 * max_body: not read, body NULL */
};

/* A local message as a br_msg (pointers into @m, valid as long as it). */
void br_from_shmbus(struct br_msg *out, const struct shmbus_msg *m);

/* A deep copy of @src in one allocation, @dst->body (free() it); header
 * keys and values NUL-terminated. 0, or -ENOMEM. */
int br_msg_copy(struct br_msg *dst, const struct br_msg *src);

/* ---- signatures (sign.c) -------------------------------------------- */

#define BR_SIG_HEADER	"x-shmbus-signature"
#define BR_SIG_LEN	67	/* "v1=" and 64 hex digits */

/*
 * Sign @m with @k: its headers get BR_SIG_HEADER (one there already is
 * replaced), its value in @buf, which must live as long as @m does.
 */
void br_sign(const struct br_key *k, struct br_msg *m,
	     char buf[BR_SIG_LEN + 1]);

/*
 * Verify @m's signature with @k: 0, and the header is taken off @m;
 * -ENOMSG: there is none; -EBADMSG: it does not match (or is malformed).
 */
int br_verify(const struct br_key *k, struct br_msg *m);

/*
 * Put @m into the dead-letter queue of local queue @queue, with the
 * attributes dlq.reason = @reason and dlq.source = @queue: 0 once it is
 * there (and confirmed, for a persistent one); -ENOENT if @queue is not
 * a queue with a dead-letter queue; else the publish's error.
 */
int br_dead_letter(struct shmbus *bus, const char *queue,
		   const struct br_msg *m, const char *reason);

/* ---- a broker (amqp.c) --------------------------------------------- */

struct br_link;

enum br_ev {
	BR_EV_ACK = 1,
	BR_EV_NACK,
	BR_EV_DELIVERY,
	BR_EV_BLOCKED,		/* the broker stops reading our publishes
				 * (a resource alarm): publish no more */
	BR_EV_UNBLOCKED,
};

struct br_event {
	enum br_ev kind;
	uint64_t tag;		/* ACK, NACK: up to this tag (multiple), or
				 * this tag alone */
	bool multiple;
	struct br_msg msg;	/* DELIVERY: valid until the next call on
				 * the link */
};

enum br_settle { BR_ACK, BR_REQUEUE, BR_DROP /* dead-letter it */ };

struct br_broker {
	const char *name;
	/* Whether this broker serves @url. */
	bool (*accepts)(const char *url);
	/*
	 * Connect for route @r: an out route gets a channel in confirm
	 * mode; an in route gets its queue declared (if asked) and bound,
	 * and a consumer with a prefetch of the route's window. NULL (and
	 * the reason on stderr) if it did not work.
	 */
	struct br_link *(*open)(const struct br_conf *c,
				const struct br_route *r);
	/* Publish; 0 and the delivery tag its confirm will name in *tag,
	 * or < 0 when the link is broken. */
	int (*publish)(struct br_link *l, const char *exchange,
		       const char *key, const struct br_msg *m,
		       uint64_t *tag);
	/* Wait up to @timeout_ms for an event: 1 and *ev, 0 for none,
	 * < 0 when the link is broken. */
	int (*next)(struct br_link *l, struct br_event *ev, int timeout_ms);
	/* Settle a delivery: 0, or < 0 when the link is broken. */
	int (*settle)(struct br_link *l, uint64_t tag, bool multiple,
		      enum br_settle how);
	/* Wait up to @timeout_ms until the link has something to read or
	 * @fd (the local side's) is readable, whichever comes first; next()
	 * with a timeout of 0 then takes what the link has. */
	void (*wait)(struct br_link *l, int fd, int timeout_ms);
	/* A stop: end a link that works in order, so that the broker has
	 * taken everything sent on it (an ack still in its socket when
	 * ours closes with unread data is lost to the reset); bounded by
	 * a short timeout. close() follows. */
	void (*goodbye)(struct br_link *l);
	void (*close)(struct br_link *l);
	/* Messages ready in an in link's queue: 0, or < 0 when the link
	 * is broken. */
	int (*depth)(struct br_link *l, uint64_t *n);
};

/* The broker that serves @url, or NULL. */
const struct br_broker *br_broker_for(const char *url);

/* Whether @url parses as an AMQP URL. */
bool br_amqp_url_ok(const char *url);

/* ---- routes (out.c, in.c) and the process (main.c) ------------------ */

struct br_worker {
	const struct br_conf *conf;
	const struct br_route *route;
	const struct br_broker *broker;
	struct shmbus *bus;
	struct br_stats stats;
	int rc;			/* the thread's exit: 0, or 1 on an error */
	/* links in a row that ended without settling anything (a channel
	 * the broker keeps closing): the next connect waits longer */
	unsigned futile;
	bool progress;		/* something settled on this link */
};

/* The route threads. */
void *br_out_run(void *worker);
void *br_in_run(void *worker);

/* Whether a stop was asked for (SIGINT, SIGTERM). */
bool br_stopping(void);

/* CLOCK_MONOTONIC in ms, in ns. */
int64_t br_now_ms(void);
int64_t br_now_ns(void);

/* Sleep up to @ms, cut short by a stop. */
void br_sleep_ms(unsigned ms);

/* A link for @w, retrying with exponential backoff and full jitter until
 * it works (NULL only at a stop). @first: not counted as a reconnect. */
struct br_link *br_connect(struct br_worker *w, bool first);

/* A diagnostic on stderr, prefixed "shmbus-bridge: ROUTE: ". */
__attribute__((format(printf, 2, 3)))
void br_log(const struct br_worker *w, const char *fmt, ...);

/* ---- request-reply across the bridge (rpc.c) ----------------------- */

/* After br_conf_parse(): the defaults, and the routes that carry
 * replies (BR_RPC_*). */
void br_rpc_conf(struct br_conf *c);

/* Before the threads: the key, the table, the local reply queue on
 * @bus. 0, or -1 (said on stderr). */
int br_rpc_setup(const struct br_conf *c, struct shmbus *bus);

/*
 * In routes: delivery @m is a request (AMQP reply_to): remember where
 * its reply goes and make @po publish it as a local request whose reply
 * comes to our local reply queue; *@corr is its local correlation id,
 * for br_rpc_forget() if the publish fails. 0, or -ENOBUFS when the
 * table is full of requests still waiting (try again later).
 */
int br_rpc_request(const struct br_msg *m, struct shmbus_pub_opts *po,
		   uint64_t *corr);
void br_rpc_forget(uint64_t corr);

/*
 * Out routes, before a publish of local message @m as @bm with routing
 * key *@key: a request gets our reply queue and a correlation id that
 * names its requester; on a BR_RPC_REPLIES_OUT route a reply gets its
 * request's AMQP reply_to (into @buf, @cap bytes) and correlation-id.
 * 0, or 1: drop @m (a reply nobody waits for any more; counted).
 */
int br_rpc_outbound(const struct br_worker *w, const struct shmbus_msg *m,
		    struct br_msg *bm, char *buf, size_t cap,
		    const char **key);

/* Out routes: the broker confirmed @m. */
void br_rpc_confirmed(const struct br_worker *w, const struct shmbus_msg *m);

/*
 * BR_RPC_REPLIES_IN routes: deliver reply @m to its requester. 0 when it
 * is done with (delivered, or dropped and counted), or a publish error
 * to try again later.
 */
int br_rpc_deliver(struct br_worker *w, const struct br_msg *m);

/* At the stop: the counters line "bridge: rpc ...", if carried. */
void br_rpc_print(void);

#endif /* SHMBUS_BRIDGE_H */
