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
 * bus bound, bound for writing: plain refusals); then the handler.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
	    q->__pad || q->nr_pools > SHMBUS_MAX_POOLS ||
	    !proto_all_zero(&q->pools[q->nr_pools],
			    (SHMBUS_MAX_POOLS - q->nr_pools) *
			    sizeof(q->pools[0])))
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
	    (q->flags & ~SBC_SUB__ALL) || q->__pad ||
	    q->max_len > SHMBUS_RING_MAX_CAP ||
	    q->max_consumers > SHMBUS_MAX_SEATS)
		return -EINVAL;
	return 0;
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

static int do_bus_open(struct request *r)
{
	const struct sbc_bus_open *q = r->body;
	struct sbc_bus_open_reply *rep = r->rep;
	struct session *s = r->s;
	bool created;
	int err;

	if (s->bus) {			/* one bus per connection */
		r->fatal = true;
		return -EINVAL;
	}
	err = bus_open(r->d, q, &s->peer, &s->bus, &created, r);
	if (err)
		return err;
	s->rdonly = q->flags & SBC_OPEN_RDONLY;
	s->perms = bus_perms(s->bus, &s->peer);
	rep->arena_size = s->bus->arena.size;
	rep->created = created;
	rep->rdonly = s->rdonly;
	rep->kmod_cookie = s->rdonly ? 0 : s->kmod_cookie;
	r->fds = s->rdonly ? &s->bus->ro_fd : &s->bus->fd;
	r->nfds = 1;
	return 0;
}

static int do_queue_declare(struct request *r)
{
	return queue_declare(r->s->bus, &r->s->peer, r->body, r->rep);
}

static int do_queue_delete(struct request *r)
{
	return queue_delete(r->s->bus, &r->s->peer, r->body);
}

static int do_attach(struct request *r)
{
	return slot_attach(r->s->bus, &r->s->peer, r->s->perms, r->body,
			   r->rep, &r->fds, &r->nfds);
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
	return subscribe(r->s->bus, &r->s->peer, r->s->perms, r->body, r->rep,
			 &r->fds, &r->nfds);
}

static int do_unsubscribe(struct request *r)
{
	if (!(r->s->perms & 4))
		return -EACCES;
	return unsubscribe(r->s->bus, &r->s->peer, r->body);
}

static int do_seats(struct request *r)
{
	return seats_request(r->s->bus, r->s->perms, r->body, r->rep, &r->fds,
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
