/* SPDX-License-Identifier: MIT */
/*
 * proto.h - the control protocol between libshmbus and shmbusd.
 *
 * Transport: a SOCK_SEQPACKET unix socket, one frame per packet. Every
 * frame starts with struct sbc_hdr; len is the whole frame and must equal
 * the packet size; the body is a fixed struct per type. Reserved and pad
 * fields must be zero and names must be valid (see proto_name_valid()).
 * File descriptors travel daemon -> client as SCM_RIGHTS on replies (nfds
 * says how many), and client -> daemon only with REJOIN (exactly one: the
 * arena) and SEATS_GIVE (one per seat its map names). Anything else (bad magic, version, type, length,
 * truncation, unexpected fds, non-zero padding) is a protocol error: the
 * daemon replies with status -EPROTO (or the specific -errno) and closes
 * that connection; everyone else is unaffected.
 *
 * Conversation: HELLO first (version negotiation), then BUS_OPEN once
 * (binds the connection to one bus: the caller's own of that name, or
 * with SBC_OPEN_OWNER the named owner's), then any number of the others:
 * QUEUE_DECLARE, QUEUE_DELETE, ATTACH, DETACH, DISPOSE, SUBSCRIBE, SEATS,
 * UNSUBSCRIBE, SEATS_GIVE (enum sbc_type). A client whose daemon died
 * says REJOIN instead of BUS_OPEN to the next one. BUS_LIST and
 * BUS_DELETE are for a connection that opened no bus (the CLI's `bus`
 * commands): said after HELLO instead of BUS_OPEN. A reply echoes the request's type and seq
 * with status 0 or -errno. A reply with status 0 carries the type's reply
 * struct; a failing one carries nothing, or the reason of a refusal: a
 * NUL-terminated text of at most SBC_REASON_MAX bytes (the NUL included)
 * and nothing after it. The daemon never sends unsolicited frames; it
 * checks a frame in server.c and answers it from the table in dispatch.c.
 *
 * docs/protocol.md describes the same in prose.
 */
#ifndef SHMBUS_PROTO_H
#define SHMBUS_PROTO_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>

#include "shmbus/layout.h"
#include "private.h"

#define SBC_MAGIC		0x31434253u	/* "SBC1" */
#define SBC_VERSION		9u
#define SBC_FRAME_MAX		1024u
#define SBC_MAX_FDS		SHMBUS_MAX_SEATS
#define SBC_REASON_MAX		200u	/* a refusal's text, NUL included */

enum sbc_type {
	SBC_HELLO		= 1,
	SBC_BUS_OPEN		= 2,
	SBC_QUEUE_DECLARE	= 3,
	SBC_QUEUE_DELETE	= 4,
	SBC_ATTACH		= 5,
	SBC_DETACH		= 6,
	SBC_DISPOSE		= 7,
	SBC_SUBSCRIBE		= 8,
	SBC_SEATS		= 9,
	SBC_UNSUBSCRIBE		= 10,
	SBC_REJOIN		= 11,
	SBC_SEATS_GIVE		= 12,
	SBC_BUS_LIST		= 13,
	SBC_BUS_DELETE		= 14,
	SBC__TYPE_MAX,
};

struct sbc_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t len;		/* whole frame, header included */
	uint32_t seq;		/* chosen by the client, echoed */
	int32_t	 status;	/* replies: 0 or -errno; requests: 0 */
	uint32_t nfds;		/* replies: fds attached; requests: 0 */
};

struct sbc_hello {
	uint32_t version_min;
	uint32_t version_max;
};

struct sbc_hello_reply {
	uint32_t version;
	uint32_t layout_version;
};

/* BUS_OPEN flags */
#define SBC_OPEN_CREATE		0x1u	/* create if absent */
#define SBC_OPEN_EXCL		0x2u	/* fail if present */
#define SBC_OPEN_RDONLY		0x4u	/* read-only mapping (stat, list) */
#define SBC_OPEN_OWNER		0x8u	/* the bus of owner_uid, not the
					 * caller's own (never created) */
#define SBC_OPEN__ALL		0xfu

struct sbc_pool_spec {
	uint32_t payload;	/* max payload bytes of the class */
	uint32_t count;		/* chunks */
	uint32_t max;		/* it may grow to; 0 = count x grow */
};

struct sbc_bus_open {
	char	 name[SHMBUS_NAME_MAX];
	uint32_t flags;		/* SBC_OPEN_* */
	uint32_t mode;		/* 0..0777, creation only; 0 = 0600 */
	uint32_t max_queues;	/* creation only; 0 = default */
	uint32_t max_slots;
	uint64_t ring_bytes;
	uint32_t nr_pools;	/* 0 = default classes */
	uint32_t owner_uid;	/* OWNER: whose namespace; else 0 */
	struct sbc_pool_spec pools[SHMBUS_MAX_POOLS];
	uint32_t grow;		/* pools may grow to count x grow; 0 = the
				 * daemon's default, 1 = fixed */
	uint32_t __pad;
};

struct sbc_bus_open_reply {
	uint64_t arena_size;
	uint32_t created;
	uint32_t rdonly;
	uint64_t kmod_cookie;	/* ATTACH this to /dev/shmbus for death
				 * notice; 0: the daemon does not watch */
	uint32_t owner_uid;	/* the daemon's record, not the arena's */
	uint32_t owner_gid;
	uint32_t mode;
	uint32_t __pad;
	uint64_t conn_token;	/* this connection's name in the arena's
				 * slots and private queues; REJOIN names
				 * it to a later daemon */
};

/*
 * BUS_OPEN fails with -EINPROGRESS while the bus named is held by running
 * processes and the daemon has not yet adopted it (it restarted): the
 * client retries, up to its connect timeout, and joins the old bus.
 *
 * REJOIN: the daemon this client opened bus (owner_uid, name) with is gone;
 * here is the arena it mapped (exactly one fd, SCM_RIGHTS) and its old
 * connection's token. The daemon adopts the arena if it does not know the
 * bus yet (after verifying that it is one of its own making, of that owner
 * and name: a sealed memfd owned by the daemon's uid whose memfd name,
 * fixed at creation, says so, with a valid superblock of the same bus id),
 * or checks that it is the arena of the bus it knows. The slots and private
 * queues of the old connection, if it was this same process (pid and
 * start time), become this connection's, which keeps that token (a
 * daemon killed before this reply arrives leaves in the arena the token
 * the client names again); otherwise it gets a new one. Reply: a
 * BUS_OPEN reply (created 0, its conn_token), no fd.
 */
#define SBC_REJOIN_RDONLY	0x1u	/* the client maps it read-only */
#define SBC_REJOIN__ALL		0x1u

struct sbc_rejoin {
	char	 name[SHMBUS_NAME_MAX];
	uint32_t owner_uid;
	uint32_t flags;		/* SBC_REJOIN_* */
	uint64_t token;		/* the old connection's conn_token */
};

/*
 * SEATS_GIVE: after a REJOIN, the seat eventfds of queue (qid, gen) this
 * client holds, in seat order, for the seats set in seat_map (one fd per
 * bit, SCM_RIGHTS). The daemon keeps those of seats it has no eventfd for
 * (each checked to be an eventfd; a seat in use gets one wake-up) and
 * closes the rest, so the consumers sleeping on them can be woken by it
 * again, and a consumer taking a free seat later gets the eventfd its
 * producers already write. Reply: no body.
 */
struct sbc_seats_give {
	uint32_t qid;
	uint32_t gen;
	uint64_t seat_map[SHMBUS_SEAT_WORDS];
};

/* QUEUE_DECLARE flags */
#define SBC_QUEUE_EXPIRE_DLQ	0x1u	/* = SHMBUS_QUEUE_EXPIRE_TO_DLQ */
#define SBC_QUEUE_PRIVATE	0x2u	/* deleted when the declaring
					 * connection closes (reply queues) */
#define SBC_QUEUE_TOPIC		0x4u	/* a topic (history: max_len) */
#define SBC_QUEUE_CHECKSUM	0x8u	/* = SHMBUS_QUEUE_CHECKSUM: messages
					 * carry a CRC32C */
#define SBC_QUEUE_DURABLE	0x10u	/* = SHMBUS_QUEUE_DURABLE: journaled
					 * on disk (sync, sync_interval_ns) */
#define SBC_QUEUE__ALL		0x1fu

struct sbc_queue_declare {
	char	 name[SHMBUS_NAME_MAX];
	uint32_t max_len;	/* 0 = default */
	uint32_t msg_size;	/* 0 = default */
	uint32_t max_consumers;	/* 0 = default */
	uint32_t flags;		/* SBC_QUEUE_* */
	uint64_t lease_ns;	/* 0 = default */
	uint64_t ttl_ns;	/* 0 = none */
	uint64_t backoff_init_ns;
	uint64_t backoff_max_ns;	/* 0 = 10 x init */
	uint32_t backoff_mult_milli;	/* 0 = 2000 */
	uint32_t max_deliveries;	/* 0 = unlimited */
	char	 dlq[SHMBUS_NAME_MAX];	/* all zero = none */
	uint64_t dedup_window_ns;	/* 0 = no dedup table */
	uint32_t overflow;		/* SHMBUS_OVERFLOW_*, 0..2 */
	uint32_t priorities;		/* levels, 0 = 1; 1..4 */
	uint32_t sync;			/* DURABLE: SHMBUS_JSYNC_*; else 0 */
	uint32_t __pad;
	uint64_t sync_interval_ns;	/* DURABLE, JSYNC_BATCH: 0 = default;
					 * else 0 */
};

struct sbc_queue_declare_reply {
	uint32_t qid;
	uint32_t gen;
	uint32_t created;
	uint32_t __pad;
};

struct sbc_queue_delete {
	char	 name[SHMBUS_NAME_MAX];
};

struct sbc_attach {
	char	 name[SHMBUS_NAME_MAX];	/* queue */
	uint32_t role;			/* SHMBUS_ROLE_* */
	uint32_t __pad;
};

struct sbc_attach_reply {
	uint32_t qid;
	uint32_t qgen;
	uint32_t slot;
	uint32_t slot_gen;
	uint32_t seat;		/* consumers; UINT32_MAX for producers */
	uint32_t nr_seats;	/* the queue's seats */
	uint32_t seat_epoch;	/* eventfds the queue has made so far */
	uint32_t __pad;
	uint64_t seat_map[SHMBUS_SEAT_WORDS];	/* the seats whose eventfds
						 * are attached, in order */
};

struct sbc_detach {
	uint32_t slot;
	uint32_t slot_gen;
};

/*
 * DISPOSE: hand a chunk the caller's slot owns to the daemon, which holds
 * it (state TIMED) and then requeues, delays or dead-letters it. The chunk
 * must be owned by @slot with exactly the owner word @owner (LOANED: a
 * delayed publish; HELD: a nack with delay, or a reject, after the
 * consumer won its lease entry).
 */
enum sbc_dispose_action {
	SBC_DISPOSE_DELAY	= 1,	/* into the queue after delay_ns */
	SBC_DISPOSE_RETRY	= 2,	/* nack: the queue's backoff */
	SBC_DISPOSE_DEADLETTER	= 3,	/* to the DLQ, reason */
};

struct sbc_dispose {
	uint32_t slot;
	uint32_t slot_gen;
	uint32_t ref;
	uint32_t action;	/* SBC_DISPOSE_* */
	uint64_t owner;
	int64_t	 delay_ns;	/* DELAY: >= 0 */
	uint32_t reason;	/* DEADLETTER: SHMBUS_DL_* */
	uint32_t __pad;
};

/* SUBSCRIBE flags */
#define SBC_SUB_DURABLE		0x1u	/* stays without consumers (group) */
#define SBC_SUB_DROP_OLDEST	0x2u	/* slow subscriber: drop its oldest */
#define SBC_SUB_HISTORY		0x4u	/* start with the topics' history */
#define SBC_SUB_PERSISTENT	0x8u	/* journaled on disk (implies DURABLE;
					 * sync, sync_interval_ns) */
#define SBC_SUB__ALL		0xfu

/*
 * SUBSCRIBE: attach a consumer to the subscription (pattern, group),
 * creating it if needed; the reply is an ATTACH reply with the seat fds.
 * pattern: a topic name, or dot-separated tokens where "*" matches one
 * token and a final ">" one or more. group: all zero = an exclusive,
 * ephemeral subscription of this consumer alone.
 */
struct sbc_subscribe {
	char	 pattern[SHMBUS_NAME_MAX];
	char	 group[SHMBUS_NAME_MAX];
	uint32_t flags;		/* SBC_SUB_* */
	uint32_t max_len;	/* new subscriptions; 0 = default */
	uint32_t max_consumers;	/* new subscriptions; 0 = default */
	uint32_t __pad;
	uint64_t lease_ns;	/* new subscriptions; 0 = default */
	uint32_t sync;		/* PERSISTENT: SHMBUS_JSYNC_*; else 0 */
	uint32_t __pad2;
	uint64_t sync_interval_ns;	/* PERSISTENT, JSYNC_BATCH; else 0 */
};

/* UNSUBSCRIBE: delete the (durable) subscription (pattern, group). */
struct sbc_unsubscribe {
	char	 pattern[SHMBUS_NAME_MAX];
	char	 group[SHMBUS_NAME_MAX];
};

/* SEATS: the seat eventfds of queue (qid, gen) made so far, to wake its
 * consumers (a topic publisher waking subscribers, a producer that lacks
 * the eventfd of a seat made after it attached). Reply: fds, seat order,
 * seat_map naming their seats. */
struct sbc_seats {
	uint32_t qid;
	uint32_t gen;
};

struct sbc_seats_reply {
	uint32_t nr_seats;
	uint32_t seat_epoch;	/* as in the arena when the fds were taken */
	uint64_t seat_map[SHMBUS_SEAT_WORDS];
};

/*
 * BUS_LIST, on a connection that opened no bus: the buses the caller may
 * open (root: every bus), SBC_BUS_LIST_MAX per reply from index @cursor
 * of the daemon's list (newest first); reply @next is the cursor of the
 * next page, 0 at the end. A bus created or deleted between pages may
 * shift the list: an entry seen twice, or one missed.
 */
#define SBC_BUS_LIST_MAX	8

struct sbc_bus_list {
	uint32_t cursor;
	uint32_t __pad;
};

struct sbc_bus_entry {
	char	 name[SHMBUS_NAME_MAX];
	uint32_t owner_uid;
	uint32_t owner_gid;
	uint32_t mode;
	uint32_t bus_id;
	uint64_t arena_size;
	uint64_t created_ns;	/* CLOCK_REALTIME */
	uint32_t members;	/* processes bound to it (connections, and
				 * those a restarted daemon has not heard
				 * from again yet) */
	uint32_t queues;	/* live queues, topics and subscriptions */
	uint32_t durable;	/* of them persistent */
	uint32_t __pad;
};

struct sbc_bus_list_reply {
	uint32_t n;		/* entries used */
	uint32_t next;		/* cursor of the next page; 0 = none */
	struct sbc_bus_entry e[SBC_BUS_LIST_MAX];
};

/*
 * BUS_DELETE, on a connection that opened no bus: delete the caller's own
 * bus of that name (with SBC_DELETE_OWNER, owner_uid's: root only).
 * Refused with -EBUSY while processes are bound to it, unless FORCE:
 * then every queue is deleted (handles see -EIDRM), the members'
 * connections are closed, and the arena's superblock says the bus is
 * gone (no daemon adopts it again). Its journals go too. Reply: what it
 * had.
 */
#define SBC_DELETE_FORCE	0x1u
#define SBC_DELETE_OWNER	0x2u
#define SBC_DELETE__ALL		0x3u

struct sbc_bus_delete {
	char	 name[SHMBUS_NAME_MAX];
	uint32_t flags;		/* SBC_DELETE_* */
	uint32_t owner_uid;	/* OWNER: whose bus; else 0 */
};

struct sbc_bus_delete_reply {
	uint32_t members;	/* detached (FORCE) */
	uint32_t queues;	/* deleted */
	uint64_t arena_size;	/* freed */
};

/*
 * A valid bus or queue name: 1..63 bytes of [A-Za-z0-9._-], not starting
 * with '.', NUL-terminated inside the field, all bytes after the NUL zero.
 * Returns 0 or -EINVAL.
 */
SHMBUS_PRIVATE_API
int proto_name_valid(const char name[SHMBUS_NAME_MAX]);

/*
 * A valid subscription pattern: a valid name, except that a whole token
 * may be "*", and the last token ">". Returns 0 or -EINVAL.
 */
SHMBUS_PRIVATE_API
int proto_pattern_valid(const char pattern[SHMBUS_NAME_MAX]);

/* Does topic name @topic match @pattern (both valid)? */
SHMBUS_PRIVATE_API
bool proto_pattern_match(const char *pattern, const char *topic);

/* Copy a C string into a name field; -EINVAL if it is not a valid name. */
int proto_name_set(char dst[SHMBUS_NAME_MAX], const char *src);

/* Is every byte of [p, p + n) zero? */
SHMBUS_PRIVATE_API
int proto_all_zero(const void *p, size_t n);

struct msghdr;
/*
 * Take the SCM_RIGHTS fds of a received message: up to @cap into @fds
 * (*stored says how many), closing the others. Returns how many fds
 * arrived in all. @fds may be NULL with @cap 0 (close them all).
 */
SHMBUS_PRIVATE_API
unsigned proto_take_fds(struct msghdr *mh, int *fds, unsigned cap,
			unsigned *stored);

/* Room for the control message of SBC_MAX_FDS fds, aligned as a cmsghdr. */
union proto_cbuf {
	struct cmsghdr align;
	uint8_t b[CMSG_SPACE(sizeof(int) * SBC_MAX_FDS)];
};

/* Attach @n fds (at most SBC_MAX_FDS) to @mh as SCM_RIGHTS, in @cbuf; no
 * control message for 0. */
SHMBUS_PRIVATE_API
void proto_give_fds(struct msghdr *mh, union proto_cbuf *cbuf, const int *fds,
		    unsigned n);

#endif /* SHMBUS_PROTO_H */
