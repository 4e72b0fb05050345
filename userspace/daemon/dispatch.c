// SPDX-License-Identifier: MIT
/*
 * dispatch.c - one request of the control protocol (proto.h), by a table
 * with a row per frame type: its request and reply body sizes, what the
 * connection must have established first, a check of the body's fields,
 * and the handler.
 *
 * Order of checks, the same for every type: HELLO before anything else;
 * the body's fields (a malformed field is a protocol error: the reply
 * says why and the connection closes); then the conversation state (a
 * bus bound, bound for writing: plain refusals); then the handler, which
 * asks policy.c whether the caller may (create, configure, publish,
 * consume), per request, and logs and explains every refusal.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "shmbusd.h"

/* What a request needs before its handler runs. */
enum {
	NEED_BUS	= 1 << 0,	/* BUS_OPEN done, else -EBADFD */
	NEED_WRITE	= 1 << 1,	/* not bound read-only, else -EPERM */
	TICK_AFTER	= 1 << 2,	/* success: run the periodic work soon */
};

struct request_type {
	uint16_t req_size, rep_size;
	uint8_t flags;			/* NEED_*, TICK_AFTER */
	/* the body's fields: 0, or -errno for a protocol error */
	int (*check)(const void *body);
	int (*handle)(struct request *r);
};

/* ---- field checks ------------------------------------------------------ */

static int check_bus_open(const void *body)
{
	const struct sbc_bus_open *q = body;

	if (proto_name_valid(q->name) || (q->flags & ~SBC_OPEN__ALL) ||
	    (!(q->flags & SBC_OPEN_OWNER) && q->owner_uid) ||
	    q->nr_pools > SHMBUS_MAX_POOLS || q->__pad ||
	    !proto_all_zero(&q->pools[q->nr_pools],
			    (SHMBUS_MAX_POOLS - q->nr_pools) *
			    sizeof(q->pools[0])))
		return -EINVAL;
	return 0;
}

static int check_bus_list(const void *body)
{
	return ((const struct sbc_bus_list *)body)->__pad ? -EINVAL : 0;
}

static int check_bus_delete(const void *body)
{
	const struct sbc_bus_delete *q = body;

	if (proto_name_valid(q->name) || (q->flags & ~SBC_DELETE__ALL) ||
	    (!(q->flags & SBC_DELETE_OWNER) && q->owner_uid))
		return -EINVAL;
	return 0;
}

/* Requests that name a queue: QUEUE_DECLARE and QUEUE_DELETE. */
static int check_queue_declare(const void *body)
{
	return proto_name_valid(((const struct sbc_queue_declare *)body)->name);
}

static int check_queue_delete(const void *body)
{
	return proto_name_valid(((const struct sbc_queue_delete *)body)->name);
}

static int check_attach(const void *body)
{
	const struct sbc_attach *q = body;

	return proto_name_valid(q->name) || q->__pad ? -EINVAL : 0;
}

static int check_subscribe(const void *body)
{
	const struct sbc_subscribe *q = body;

	if (proto_pattern_valid(q->pattern) ||
	    (!proto_all_zero(q->group, sizeof(q->group)) &&
	     proto_name_valid(q->group)) ||
	    (q->flags & ~SBC_SUB__ALL) || q->__pad || q->__pad2 ||
	    q->max_len > SHMBUS_RING_MAX_CAP ||
	    q->max_consumers > SHMBUS_MAX_SEATS)
		return -EINVAL;
	/* persistent: durable, a group, no drop-oldest; sync settings only
	 * then */
	if ((q->flags & SBC_SUB_PERSISTENT)
	    ? (!(q->flags & SBC_SUB_DURABLE) || proto_all_zero(q->group,
							       sizeof(q->group)) ||
	       (q->flags & SBC_SUB_DROP_OLDEST))
	    : (q->sync || q->sync_interval_ns))
		return -EINVAL;
	/* the history would enter it without being journaled */
	if ((q->flags & SBC_SUB_PERSISTENT) && (q->flags & SBC_SUB_HISTORY))
		return -EINVAL;
	return 0;
}

static int check_rejoin(const void *body)
{
	const struct sbc_rejoin *q = body;

	return proto_name_valid(q->name) || (q->flags & ~SBC_REJOIN__ALL) ||
	       !q->token ? -EINVAL : 0;
}

static int check_unsubscribe(const void *body)
{
	const struct sbc_unsubscribe *q = body;

	if (proto_pattern_valid(q->pattern) || proto_name_valid(q->group))
		return -EINVAL;
	return 0;
}

/* ---- handlers -------------------------------------------------------------- */

static int do_hello(struct request *r)
{
	const struct sbc_hello *q = r->body;
	struct sbc_hello_reply *rep = r->rep;

	if (r->s->hello) {
		r->fatal = true;
		return -EPROTO;
	}
	if (q->version_min > SBC_VERSION || q->version_max < SBC_VERSION ||
	    q->version_min > q->version_max) {
		r->fatal = true;
		return -EPROTONOSUPPORT;
	}
	r->s->hello = true;
	rep->version = SBC_VERSION;
	rep->layout_version = SHMBUS_LAYOUT_VERSION;
	return 0;
}

/* ---- authorization ------------------------------------------------------- */

/* Log a refusal (uid, pid, bus, operation, and the rule or default that
 * refused, in @why) and tell the client. */
static int refuse(struct request *r, const struct bus_ref *bus,
		  const char *op, const char *why)
{
	const struct peer *p = &r->s->peer;

	log_info("refused: uid %u pid %d bus %u:%s %s: %s", p->uid, p->pid,
		 bus->owner_uid, bus->name, op, why);
	req_reason(r, "%s", why);
	return -EACCES;
}

/* May the caller do @op on @bus? Decided per request, so that a policy
 * reloaded since BUS_OPEN applies. 0, or -EACCES logged and explained. */
static int allow(struct request *r, const struct bus_ref *bus,
		 enum policy_op op)
{
	char why[200];

	if (!policy_check(r->d->policy, &r->s->peer, bus, op, why,
			  sizeof(why)))
		return 0;
	return refuse(r, bus, policy_op_name(op), why);
}

/* The same, quietly: is @op allowed? */
static bool allowed(struct request *r, const struct bus_ref *bus,
		    enum policy_op op)
{
	char why[200];

	return !policy_check(r->d->policy, &r->s->peer, bus, op, why,
			     sizeof(why));
}

static int need(struct request *r, enum policy_op op)
{
	struct bus_ref ref = bus_ref_of(r->s->bus);

	return allow(r, &ref, op);
}

/* ---- handlers (continued) --------------------------------------------------- */

/*
 * BUS_OPEN: the caller's own bus of that name, or with SBC_OPEN_OWNER the
 * named owner's. Opening needs consume (read-only) or any of publish,
 * consume, configure; creating needs create and happens only in the
 * caller's own namespace.
 */
static int open_existing(struct request *r, struct dbus *b)
{
	const struct sbc_bus_open *q = r->body;
	struct bus_ref ref = bus_ref_of(b);

	if (q->flags & SBC_OPEN_EXCL) {
		req_reason(r, "bus %u:%s exists", b->owner_uid, b->name);
		return -EEXIST;
	}
	if (q->flags & SBC_OPEN_RDONLY)
		return allow(r, &ref, POLICY_CONSUME);
	if (allowed(r, &ref, POLICY_CONSUME) ||
	    allowed(r, &ref, POLICY_CONFIGURE))
		return 0;
	return allow(r, &ref, POLICY_PUBLISH);
}

/* A BUS_OPEN (or REJOIN) reply for bus r->s->bus. */
static void open_reply(struct request *r, bool created)
{
	struct sbc_bus_open_reply *rep = r->rep;
	const struct session *s = r->s;
	const struct dbus *b = s->bus;

	rep->arena_size = b->arena.size;
	rep->created = created;
	rep->rdonly = s->rdonly;
	rep->kmod_cookie = s->rdonly ? 0 : s->kmod_cookie;
	rep->owner_uid = b->owner_uid;
	rep->owner_gid = b->owner_gid;
	rep->mode = b->mode;
	rep->conn_token = s->peer.token;
}

static int do_bus_open(struct request *r)
{
	const struct sbc_bus_open *q = r->body;
	struct session *s = r->s;
	uid_t owner = q->flags & SBC_OPEN_OWNER ? q->owner_uid : s->peer.uid;
	struct dbus *b;
	bool created = false;
	int err;

	if (s->bus) {			/* one bus per connection */
		r->fatal = true;
		return -EINVAL;
	}
	b = bus_find(r->d, owner, q->name);
	if (!b && !adopt_pending(owner, q->name) &&
	    durable_bus_open(r->d, owner, q->name, &b) <= 0)
		b = NULL;	/* not in the state directory either */
	if (b) {
		err = open_existing(r, b);
	} else if (adopt_pending(owner, q->name)) {
		/* never a second bus beside one that processes still use:
		 * the client retries until one of them gives it back */
		req_reason(r, "bus %u:%s is held by running processes that "
			   "have not yet rejoined the restarted daemon", owner,
			   q->name);
		err = -EINPROGRESS;
	} else if (!(q->flags & SBC_OPEN_CREATE)) {
		req_reason(r, "no bus %u:%s", owner, q->name);
		err = -ENOENT;
	} else if (owner != s->peer.uid) {
		/* never a bus in someone else's namespace */
		req_reason(r, "no bus %u:%s (a bus is created only in its "
			   "creator's own namespace)", owner, q->name);
		err = -ENOENT;
	} else {
		struct bus_ref ref = { .owner_uid = owner,
				       .owner_gid = s->peer.gid,
				       .mode = q->mode, .name = q->name };

		err = allow(r, &ref, POLICY_CREATE);
		if (!err)
			err = bus_create(r->d, q, &s->peer, &b, r);
		created = !err;
	}
	if (err)
		return err;
	s->bus = b;
	/* what the opener validates next, as the daemon made it */
	if (!created)
		bus_repair(s->bus, 0);
	s->rdonly = q->flags & SBC_OPEN_RDONLY;
	open_reply(r, created);
	r->fds = s->rdonly ? &b->ro_fd : &b->fd;
	r->nfds = 1;
	return 0;
}

/* BUS_LIST and BUS_DELETE: on a connection that opened no bus. */
static int unbound(struct request *r)
{
	if (!r->s->bus)
		return 0;
	req_reason(r, "this connection has bus '%s' open: ask on one that "
		   "opened none", r->s->bus->name);
	return -EISCONN;
}

/* BUS_LIST: the buses the caller could open (root: all), a page. */
static int do_bus_list(struct request *r)
{
	const struct sbc_bus_list *q = r->body;
	struct sbc_bus_list_reply *rep = r->rep;
	uint32_t i = 0;
	int err = unbound(r);

	if (err)
		return err;
	for (const struct dbus *b = r->d->buses; b; b = b->next) {
		struct bus_ref ref = bus_ref_of(b);
		struct sbc_bus_entry *e;

		if (!allowed(r, &ref, POLICY_CONSUME) &&
		    !allowed(r, &ref, POLICY_PUBLISH) &&
		    !allowed(r, &ref, POLICY_CONFIGURE))
			continue;
		if (i++ < q->cursor)
			continue;
		if (rep->n == SBC_BUS_LIST_MAX) {
			rep->next = i - 1;
			break;
		}
		e = &rep->e[rep->n++];
		memcpy(e->name, b->name, sizeof(e->name));
		e->owner_uid = b->owner_uid;
		e->owner_gid = b->owner_gid;
		e->mode = b->mode;
		e->bus_id = b->arena.bus_id;
		e->arena_size = b->committed;
		e->created_ns = READ_ONCE(b->arena.sb->created_ns);
		e->members = server_bus_members(b, NULL, 0);
		bus_count_queues(b, &e->queues, &e->durable);
	}
	return 0;
}

/*
 * BUS_DELETE: the owner's (or root's) to do. A bus with members is
 * refused, naming some of them, unless FORCE detaches them.
 */
static int do_bus_delete(struct request *r)
{
	const struct sbc_bus_delete *q = r->body;
	const struct peer *p = &r->s->peer;
	uid_t owner = q->flags & SBC_DELETE_OWNER ? q->owner_uid : p->uid;
	struct dbus *b;
	pid_t pids[4];
	unsigned n;
	int err = unbound(r);

	if (err)
		return err;
	if (owner != p->uid && p->uid != 0) {
		req_reason(r, "bus %u:%s is not yours to delete (its owner "
			   "or root may)", owner, q->name);
		return -EACCES;
	}
	if (adopt_pending(owner, q->name)) {
		req_reason(r, "bus %u:%s is held by running processes that "
			   "have not yet rejoined the restarted daemon", owner,
			   q->name);
		return -EINPROGRESS;
	}
	b = bus_find(r->d, owner, q->name);
	if (!b && durable_bus_open(r->d, owner, q->name, &b) <= 0)
		b = NULL;	/* not in the state directory either */
	if (!b) {
		req_reason(r, "no bus %u:%s", owner, q->name);
		return -ENOENT;
	}
	n = server_bus_members(b, pids, 4);
	if (n && !(q->flags & SBC_DELETE_FORCE)) {
		char list[64] = "";
		size_t k = 0;

		for (unsigned i = 0; i < MIN(n, 4u); i++)
			k += (size_t)snprintf(list + k, sizeof(list) - k, "%s%d",
					      i ? ", " : "", pids[i]);
		req_reason(r, "bus %u:%s has %u member%s (pid %s%s); --force "
			   "detaches them", owner, q->name, n, n == 1 ? "" : "s",
			   list, n > 4 ? ", ..." : "");
		return -EBUSY;
	}
	log_info("bus %u:%s: deleted by uid %u pid %d%s", owner, q->name,
		 p->uid, p->pid, n ? " (forced: its members are detached)" : "");
	bus_delete(r->d, b, r->rep);
	return 0;
}

/*
 * REJOIN: a client of a daemon that died gives back the arena it maps
 * (adopted now if the bus is not known yet; bus_adopt() checks it is an
 * arena of ours) and takes back what its old connection owned, if that
 * was this same process. It may open the bus as BUS_OPEN would let it.
 */
static int do_rejoin(struct request *r)
{
	const struct sbc_rejoin *q = r->body;
	struct session *s = r->s;
	struct dbus *b;
	char why[200], src[64];
	uint32_t ghost;
	int err;

	if (s->bus) {			/* one bus per connection */
		r->fatal = true;
		return -EINVAL;
	}
	if (r->in_nfds != 1) {
		req_reason(r, "REJOIN carries exactly one file descriptor, "
			   "the arena");
		r->fatal = true;
		return -EBADF;
	}
	snprintf(src, sizeof(src), "pid %d uid %u", s->peer.pid, s->peer.uid);
	err = bus_adopt(r->d, r->in_fds[0], src, &b, why, sizeof(why));
	if (err) {
		req_reason(r, "%s", why);
		return err == -EEXIST ? -EACCES : err;
	}
	if (b->owner_uid != q->owner_uid ||
	    strncmp(b->name, q->name, SHMBUS_NAME_MAX)) {
		log_info("refused: uid %u pid %d rejoined bus %u:%s with the "
			 "arena of bus %u:%s", s->peer.uid, s->peer.pid,
			 q->owner_uid, q->name, b->owner_uid, b->name);
		req_reason(r, "the arena given is that of bus %u:%s, not "
			   "%u:%s", b->owner_uid, b->name, q->owner_uid,
			   q->name);
		return -EACCES;
	}
	{
		struct sbc_bus_open as = { .flags = q->flags & SBC_REJOIN_RDONLY
						    ? SBC_OPEN_RDONLY : 0 };
		const void *body = r->body;

		r->body = &as;
		err = open_existing(r, b);
		r->body = body;
		if (err)
			return err;
	}
	s->bus = b;
	s->rdonly = q->flags & SBC_REJOIN_RDONLY;
	ghost = server_ghost_take(b, q->token, &s->peer);
	if (ghost) {
		/* the same process's connection: it keeps its name, so that
		 * a daemon killed before this reply reaches the client finds
		 * the token the client will name again in the arena */
		s->peer.token = q->token;
		bus_rehome(b, ghost, &s->peer);
	} else
		log_info("bus %u:%s: pid %d rejoined; nothing of its old "
			 "connection was left", b->owner_uid, b->name,
			 s->peer.pid);
	open_reply(r, false);
	return 0;
}

/* Is @fd an eventfd? */
static bool is_eventfd(int fd)
{
	char link[32];

	return !fd_link(0, fd, link, sizeof(link)) &&
	       !strcmp(link, "anon_inode:[eventfd]");
}

/*
 * SEATS_GIVE: after a REJOIN, the seat eventfds a client holds. Kept for
 * the seats the daemon has none for: the same eventfds the consumers
 * sleep on and the producers write, so the daemon can wake them again.
 * A member could give another eventfd for a seat: it could then steal or
 * fake that bus's wake-ups, which members can do anyway.
 */
static int do_seats_give(struct request *r)
{
	const struct sbc_seats_give *q = r->body;
	struct dbus *b = r->s->bus;
	struct bus_ref ref = bus_ref_of(b);
	unsigned want = 0, k = 0, kept = 0;
	struct dqueue *dq;
	int err;

	if (!allowed(r, &ref, POLICY_CONSUME)) {
		err = allow(r, &ref, POLICY_PUBLISH);
		if (err)
			return err;
	}
	for (unsigned w = 0; w < SHMBUS_SEAT_WORDS; w++)
		want += (unsigned)__builtin_popcountll(q->seat_map[w]);
	if (want != r->in_nfds) {
		req_reason(r, "seat_map names %u seats, %u fds came", want,
			   r->in_nfds);
		r->fatal = true;
		return -EINVAL;
	}
	if (!dqueue_is(b, q->qid, q->gen))
		return -EIDRM;
	dq = &b->queues[q->qid];
	for (uint32_t seat = 0; seat < SHMBUS_MAX_SEATS; seat++) {
		if (!(q->seat_map[seat / 64] & (1ULL << (seat % 64))))
			continue;
		if (seat < dq->nr_seats && dq->seat_fds[seat] < 0 &&
		    is_eventfd(r->in_fds[k])) {
			static const uint64_t one = 1;

			dq->seat_fds[seat] = r->in_fds[k];
			r->in_fds[k] = -1;
			kept++;
			/* wake-ups owed while no daemon could write it (a
			 * dead producer's, a message that waited): a
			 * spurious one costs its consumer one read() */
			if (dq->seat_slot[seat] &&
			    write(dq->seat_fds[seat], &one, sizeof(one)) < 0)
				log_warn("seat %u eventfd write: %s", seat,
					 strerror(errno));
		}
		k++;
	}
	if (kept)
		log_debug("bus '%s': queue '%s': %u seat eventfds given back",
			  b->name, dq->name, kept);
	return 0;
}

/* The prefix of the reply queues the library declares (reqrep.c). */
#define REPLY_PREFIX	"_reply."

/*
 * QUEUE_DECLARE: configure; or a private queue (deleted with this
 * connection), which needs publish and consume, and for a caller who may
 * not configure a name starting with "_reply.": a member cannot take a
 * name the owner will want. A name that exists as a queue of another
 * kind of ownership (private to another connection, or shared while
 * this declare asks for a private one) is refused: never joined.
 */
static int do_queue_declare(struct request *r)
{
	const struct sbc_queue_declare *q = r->body;
	struct dbus *b = r->s->bus;
	bool priv = q->flags & SBC_QUEUE_PRIVATE;
	struct bus_ref ref = bus_ref_of(b);
	int id, err;

	if (!priv) {
		err = allow(r, &ref, POLICY_CONFIGURE);
	} else {
		err = allow(r, &ref, POLICY_PUBLISH);
		if (!err)
			err = allow(r, &ref, POLICY_CONSUME);
		if (!err && strncmp(q->name, REPLY_PREFIX, strlen(REPLY_PREFIX)) &&
		    !allowed(r, &ref, POLICY_CONFIGURE)) {
			char why[160];

			snprintf(why, sizeof(why), "private queue '%s': without "
				 "configure permission a private queue's name "
				 "must start with \"" REPLY_PREFIX "\"", q->name);
			err = refuse(r, &ref, "configure", why);
		}
	}
	if (err)
		return err;
	id = dqueue_find(b, q->name);
	if (id >= 0 && b->queues[id].kind == DQ_QUEUE &&
	    b->queues[id].owner_conn != (priv ? r->s->peer.conn_id : 0)) {
		log_info("bus %u:%s: queue '%s' exists as a %s; uid %u pid %d "
			 "declared it %s", b->owner_uid, b->name, q->name,
			 b->queues[id].owner_conn ? "private queue of another "
			 "connection" : "shared queue", r->s->peer.uid,
			 r->s->peer.pid, priv ? "private" : "shared");
		req_reason(r, "queue '%s' exists as a %s", q->name,
			   b->queues[id].owner_conn ?
			   "private queue of another connection" :
			   "shared queue (a private declare cannot take it)");
		return -EEXIST;
	}
	if (q->flags & SBC_QUEUE_DURABLE)
		return durable_declare(b, &r->s->peer, q, r->rep, r);
	if (id >= 0 && b->queues[id].dur) {
		req_reason(r, "queue '%s' exists as a durable queue", q->name);
		return -EEXIST;
	}
	err = queue_create(b, &r->s->peer, q, r->rep, DQ_QUEUE);
	if (err == -EEXIST && *declare_why())
		req_reason(r, "%s", declare_why());
	return err;
}

/* QUEUE_DELETE: configure, or the connection a private queue belongs to. */
static int do_queue_delete(struct request *r)
{
	const struct sbc_queue_delete *q = r->body;
	struct dbus *b = r->s->bus;
	int id = dqueue_find(b, q->name), err;

	if (id < 0)
		return id;
	if (!b->queues[id].owner_conn ||
	    b->queues[id].owner_conn != r->s->peer.conn_id) {
		err = need(r, POLICY_CONFIGURE);
		if (err)
			return err;
	}
	dqueue_delete(b, id);
	return 0;
}

/* ATTACH: publish or consume; only its own connection consumes from a
 * private queue. */
static int do_attach(struct request *r)
{
	const struct sbc_attach *q = r->body;
	struct dbus *b = r->s->bus;
	bool prod = q->role == SHMBUS_ROLE_PRODUCER;
	int id, err;

	bus_repair(b, REPAIR_QUEUES);
	if (prod || q->role == SHMBUS_ROLE_CONSUMER) {
		err = need(r, prod ? POLICY_PUBLISH : POLICY_CONSUME);
		if (err)
			return err;
		id = dqueue_find(b, q->name);
		if (id >= 0 && b->queues[id].damaged) {
			req_reason(r, "queue '%s' is quarantined: its ring was "
				   "damaged beyond repair; delete it and "
				   "declare it again", q->name);
			return -EUCLEAN;
		}
		if (!prod && id >= 0 && b->queues[id].owner_conn &&
		    b->queues[id].owner_conn != r->s->peer.conn_id) {
			struct bus_ref ref = bus_ref_of(b);
			char why[160];

			snprintf(why, sizeof(why), "queue '%s' is private to "
				 "another connection", q->name);
			return refuse(r, &ref, "consume", why);
		}
	}
	return slot_attach(b, &r->s->peer, prod ? 2 : 4, q, r->rep, &r->fds,
			   &r->nfds);
}

static int do_detach(struct request *r)
{
	return slot_detach(r->s->bus, &r->s->peer, r->body);
}

static int do_dispose(struct request *r)
{
	return dispose_request(r->s->bus, &r->s->peer, r->body);
}

static int do_subscribe(struct request *r)
{
	int err = need(r, POLICY_CONSUME);

	return err ? err : subscribe(r->s->bus, &r->s->peer, 4, r->body,
				     r->rep, &r->fds, &r->nfds, r);
}

static int do_unsubscribe(struct request *r)
{
	int err = need(r, POLICY_CONSUME);

	return err ? err : unsubscribe(r->s->bus, &r->s->peer, r->body);
}

/* SEATS: publish (a producer waking sleepers) or consume (a nack puts a
 * message back and wakes a sleeper too). */
static int do_seats(struct request *r)
{
	struct bus_ref ref = bus_ref_of(r->s->bus);
	unsigned perms = allowed(r, &ref, POLICY_CONSUME) ? 4 : 0;
	int err;

	if (!perms) {
		err = allow(r, &ref, POLICY_PUBLISH);
		if (err)
			return err;
		perms = 2;
	}
	return seats_request(r->s->bus, perms, r->body, r->rep, &r->fds,
			     &r->nfds);
}

/* ---- the table --------------------------------------------------------- */

#define ROW(type, req, rep, fl, chk, fn)				\
	[type] = { sizeof(req), (rep), (fl), (chk), (fn) }

static const struct request_type types[SBC__TYPE_MAX] = {
	ROW(SBC_HELLO, struct sbc_hello, sizeof(struct sbc_hello_reply),
	    0, NULL, do_hello),
	ROW(SBC_BUS_OPEN, struct sbc_bus_open,
	    sizeof(struct sbc_bus_open_reply), 0, check_bus_open, do_bus_open),
	ROW(SBC_QUEUE_DECLARE, struct sbc_queue_declare,
	    sizeof(struct sbc_queue_declare_reply), NEED_BUS | NEED_WRITE,
	    check_queue_declare, do_queue_declare),
	ROW(SBC_QUEUE_DELETE, struct sbc_queue_delete, 0,
	    NEED_BUS | NEED_WRITE | TICK_AFTER, check_queue_delete,
	    do_queue_delete),
	ROW(SBC_ATTACH, struct sbc_attach, sizeof(struct sbc_attach_reply),
	    NEED_BUS | NEED_WRITE | TICK_AFTER, check_attach, do_attach),
	ROW(SBC_DETACH, struct sbc_detach, 0, NEED_BUS, NULL, do_detach),
	ROW(SBC_DISPOSE, struct sbc_dispose, 0, NEED_BUS | NEED_WRITE, NULL,
	    do_dispose),
	ROW(SBC_SUBSCRIBE, struct sbc_subscribe,
	    sizeof(struct sbc_attach_reply),
	    NEED_BUS | NEED_WRITE | TICK_AFTER, check_subscribe, do_subscribe),
	ROW(SBC_SEATS, struct sbc_seats, sizeof(struct sbc_seats_reply),
	    NEED_BUS | NEED_WRITE, NULL, do_seats),
	ROW(SBC_UNSUBSCRIBE, struct sbc_unsubscribe, 0, NEED_BUS | NEED_WRITE,
	    check_unsubscribe, do_unsubscribe),
	ROW(SBC_REJOIN, struct sbc_rejoin, sizeof(struct sbc_bus_open_reply),
	    TICK_AFTER, check_rejoin, do_rejoin),
	ROW(SBC_SEATS_GIVE, struct sbc_seats_give, 0, NEED_BUS | NEED_WRITE,
	    NULL, do_seats_give),
	ROW(SBC_BUS_LIST, struct sbc_bus_list,
	    sizeof(struct sbc_bus_list_reply), 0, check_bus_list, do_bus_list),
	ROW(SBC_BUS_DELETE, struct sbc_bus_delete,
	    sizeof(struct sbc_bus_delete_reply), TICK_AFTER, check_bus_delete,
	    do_bus_delete),
};

static const struct request_type *type_of(unsigned type)
{
	return type < SBC__TYPE_MAX && types[type].handle ? &types[type] : NULL;
}

void req_reason(struct request *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
	va_end(ap);
}

bool request_takes_fds(unsigned type)
{
	return type == SBC_REJOIN || type == SBC_SEATS_GIVE;
}

long request_body_size(unsigned type)
{
	const struct request_type *t = type_of(type);

	return t ? t->req_size : -1;
}

int dispatch(struct request *r)
{
	const struct request_type *t = type_of(r->hdr->type);
	int err;

	if (!t || (!r->s->hello && r->hdr->type != SBC_HELLO)) {
		r->fatal = true;
		return -EPROTO;
	}
	r->rep_len = t->rep_size;
	if (t->check && (err = t->check(r->body))) {
		r->fatal = true;
		return err;
	}
	if ((t->flags & NEED_BUS) && !r->s->bus) {
		req_reason(r, "no bus opened on this connection");
		return -EBADFD;
	}
	if ((t->flags & NEED_WRITE) && r->s->rdonly) {
		req_reason(r, "bus '%s' was opened read-only", r->s->bus->name);
		return -EPERM;
	}
	quota_why_clear();
	err = t->handle(r);
	if (err == -EDQUOT && *quota_why() && !r->reason[0])
		req_reason(r, "%s", quota_why());
	if (!err && (t->flags & TICK_AFTER))
		server_want_tick();
	return err;
}
