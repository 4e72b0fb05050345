// SPDX-License-Identifier: MIT
/*
 * amqp.c - the broker operations for AMQP 0-9-1 (RabbitMQ), over
 * librabbitmq: one connection and one channel per link.
 *
 * An out link's channel is in confirm mode: its publishes are numbered
 * from 1 and the broker settles them in order with basic.ack/basic.nack
 * (RabbitMQ's confirms of a channel are ordered). An in link consumes one
 * queue with a prefetch of the route's window (basic.qos), so the broker
 * never has more unacked deliveries out to us than the route holds.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <openssl/ssl.h>

#include "bridge.h"

#define CH	1

struct br_link {
	amqp_connection_state_t c;
	enum br_dir dir;
	bool tls;
	uint64_t next_tag;		/* out: the next publish's tag */
	/* in: the delivery last returned; its method and properties are
	 * in the connection's frame pool until the next wait */
	amqp_basic_deliver_t dlv;
	amqp_basic_properties_t *props;
	amqp_bytes_t body;		/* malloc()ed */
	bool too_large;			/* its body was not kept */
	size_t max_body;
	struct timeval rpc_tmo;		/* a reply, a message's next frame */
	char scratch[4096];		/* in: header values made text */
	size_t used;
	const char *queue;		/* in: the queue consumed */
	const char *name;		/* the route's, for messages */
};

static bool amqp_accepts(const char *url)
{
	return !strncmp(url, "amqp://", 7) || !strncmp(url, "amqps://", 8);
}

static const char *reply_text(amqp_rpc_reply_t r)
{
	if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
		return amqp_error_string2(r.library_error);
	if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION) {
		static _Thread_local char buf[300];
		amqp_bytes_t t = { 0 };

		if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
			t = ((amqp_channel_close_t *)r.reply.decoded)->reply_text;
		else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
			t = ((amqp_connection_close_t *)r.reply.decoded)->reply_text;
		snprintf(buf, sizeof(buf), "refused by the broker: %.*s",
			 (int)t.len, t.bytes ? (char *)t.bytes : "");
		return buf;
	}
	return "no reply";
}

static bool rpc_ok(amqp_connection_state_t c, const char *what,
		   const struct br_route *r)
{
	amqp_rpc_reply_t rep = amqp_get_rpc_reply(c);

	if (rep.reply_type == AMQP_RESPONSE_NORMAL)
		return true;
	fprintf(stderr, "shmbus-bridge: %s: AMQP %s failed: %s\n", r->name,
		what, reply_text(rep));
	return false;
}

/* A TCP or TLS socket for @u, per the URL's scheme and the options. */
static amqp_socket_t *new_socket(amqp_connection_state_t c,
				 const struct br_conf *conf,
				 const struct amqp_connection_info *u,
				 const struct br_route *r)
{
	amqp_socket_t *s;

	if (!u->ssl)
		return amqp_tcp_socket_new(c);
	s = amqp_ssl_socket_new(c);
	if (!s)
		return NULL;
	amqp_ssl_socket_set_verify_peer(s, !conf->tls_insecure);
	amqp_ssl_socket_set_verify_hostname(s, !conf->tls_insecure);
	/* librabbitmq loads no CA by itself: without tls-ca, the system's */
	if (!conf->tls_ca[0] &&
	    !SSL_CTX_set_default_verify_paths(amqp_ssl_socket_get_context(s))) {
		fprintf(stderr, "shmbus-bridge: %s: cannot load the system's "
			"CA certificates\n", r->name);
		return NULL;
	}
	if (conf->tls_ca[0] &&
	    amqp_ssl_socket_set_cacert(s, conf->tls_ca) != AMQP_STATUS_OK) {
		fprintf(stderr, "shmbus-bridge: %s: cannot use CA file %s\n",
			r->name, conf->tls_ca);
		return NULL;
	}
	if (conf->tls_cert[0] &&
	    amqp_ssl_socket_set_key(s, conf->tls_cert, conf->tls_key) !=
	    AMQP_STATUS_OK) {
		fprintf(stderr, "shmbus-bridge: %s: cannot use client "
			"certificate %s and key %s\n", r->name, conf->tls_cert,
			conf->tls_key);
		return NULL;
	}
	return s;
}

static bool declare_in(amqp_connection_state_t c, const struct br_route *r)
{
	amqp_table_entry_t args[3];
	amqp_table_t t = { 0, args };

	if (r->declare != BR_DECLARE_NONE) {
		if (r->declare == BR_DECLARE_QUORUM) {
			args[t.num_entries].key = amqp_cstring_bytes("x-queue-type");
			args[t.num_entries].value.kind = AMQP_FIELD_KIND_UTF8;
			args[t.num_entries++].value.value.bytes =
				amqp_cstring_bytes("quorum");
		}
		if (r->dlx[0]) {
			args[t.num_entries].key =
				amqp_cstring_bytes("x-dead-letter-exchange");
			args[t.num_entries].value.kind = AMQP_FIELD_KIND_UTF8;
			args[t.num_entries++].value.value.bytes =
				amqp_cstring_bytes(r->dlx);
		}
		if (r->dlx_key[0]) {
			args[t.num_entries].key =
				amqp_cstring_bytes("x-dead-letter-routing-key");
			args[t.num_entries].value.kind = AMQP_FIELD_KIND_UTF8;
			args[t.num_entries++].value.value.bytes =
				amqp_cstring_bytes(r->dlx_key);
		}
		amqp_queue_declare(c, CH, amqp_cstring_bytes(r->queue), 0, 1, 0,
				   0, t);
		if (!rpc_ok(c, "queue.declare", r))
			return false;
	}
	if (r->bind_exchange[0]) {
		amqp_queue_bind(c, CH, amqp_cstring_bytes(r->queue),
				amqp_cstring_bytes(r->bind_exchange),
				amqp_cstring_bytes(r->bind_key),
				amqp_empty_table);
		if (!rpc_ok(c, "queue.bind", r))
			return false;
	}
	amqp_basic_qos(c, CH, 0, (uint16_t)r->window, 0);
	if (!rpc_ok(c, "basic.qos", r))
		return false;
	amqp_basic_consume(c, CH, amqp_cstring_bytes(r->queue),
			   amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
	return rpc_ok(c, "basic.consume", r);
}

/*
 * Log in, asking for the route's heartbeat (a connection silent for two
 * of them is given up: librabbitmq reports it on the next wait) and
 * telling the broker we understand connection.blocked (it then says when
 * a resource alarm stops it reading our publishes) and basic.cancel (a
 * consumer's queue deleted).
 */
static amqp_rpc_reply_t login(amqp_connection_state_t c,
			      const struct br_conf *conf,
			      const struct amqp_connection_info *u)
{
	amqp_table_entry_t cap[2] = {
		{ .key = amqp_cstring_bytes("connection.blocked"),
		  .value = { .kind = AMQP_FIELD_KIND_BOOLEAN,
			     .value.boolean = 1 } },
		{ .key = amqp_cstring_bytes("consumer_cancel_notify"),
		  .value = { .kind = AMQP_FIELD_KIND_BOOLEAN,
			     .value.boolean = 1 } },
	};
	amqp_table_entry_t prop[1] = {
		{ .key = amqp_cstring_bytes("capabilities"),
		  .value = { .kind = AMQP_FIELD_KIND_TABLE,
			     .value.table = { 2, cap } } },
	};
	amqp_table_t props = { 1, prop };

	return amqp_login_with_properties(c, u->vhost, 0, 131072,
					  (int)conf->heartbeat, &props,
					  AMQP_SASL_METHOD_PLAIN, u->user,
					  u->password);
}

static struct br_link *amqp_open(const struct br_conf *conf,
				 const struct br_route *r)
{
	struct amqp_connection_info u;
	struct timeval tmo = { BR_CONNECT_S, 0 }, rpc_tmo = { 0, 0 };
	char *buf = strdup(conf->url);
	struct br_link *l = calloc(1, sizeof(*l));
	amqp_socket_t *s;
	amqp_rpc_reply_t rep;
	int rc;

	if (!buf || !l)
		goto fail;
	amqp_default_connection_info(&u);
	if (amqp_parse_url(buf, &u) != AMQP_STATUS_OK)
		goto fail;	/* conf.c checked it: cannot happen */
	if (conf->user[0]) {
		u.user = (char *)conf->user;
		u.password = (char *)conf->pass;
	}
	l->dir = r->dir;
	l->queue = r->dir == BR_IN ? r->queue : "";
	l->max_body = r->max_body ? r->max_body : SIZE_MAX;
	l->tls = u.ssl;
	l->name = r->name;
	l->c = amqp_new_connection();
	if (!l->c)
		goto fail;
	s = new_socket(l->c, conf, &u, r);
	if (!s)
		goto fail;
	/* bounded: a host that drops SYNs must not hold off the backoff
	 * loop, nor a stop, for the kernel's minutes */
	rc = amqp_socket_open_noblock(s, u.host, u.port, &tmo);
	if (rc != AMQP_STATUS_OK) {
		/* for TLS: which check failed (the peer's certificate, the
		 * host name in it, the handshake) */
		fprintf(stderr, "shmbus-bridge: %s: cannot connect to "
			"%s:%d%s: %s\n", r->name, u.host, u.port,
			u.ssl ? " (TLS)" : "", amqp_error_string2(rc));
		goto fail;
	}
	rep = login(l->c, conf, &u);
	if (rep.reply_type != AMQP_RESPONSE_NORMAL) {
		fprintf(stderr, "shmbus-bridge: %s: login to %s:%d failed: "
			"%s\n", r->name, u.host, u.port, reply_text(rep));
		goto fail;
	}
	/*
	 * What we sent and the peer does not acknowledge (a network that
	 * drops everything, a broker that stopped reading) ends the
	 * connection after two heartbeats, also under a publish waiting for
	 * room in the socket, which librabbitmq waits for without a
	 * deadline, and without a heartbeat read meanwhile.
	 */
	if (conf->heartbeat) {
		unsigned int ms = conf->heartbeat * 2000;

		setsockopt(amqp_get_sockfd(l->c), IPPROTO_TCP,
			   TCP_USER_TIMEOUT, &ms, sizeof(ms));
	}
	/* a broker that stops answering must not hold a call for ever */
	rpc_tmo.tv_sec = conf->heartbeat ? 2 * conf->heartbeat : 30;
	amqp_set_rpc_timeout(l->c, &rpc_tmo);
	l->rpc_tmo = rpc_tmo;
	amqp_channel_open(l->c, CH);
	if (!rpc_ok(l->c, "channel.open", r))
		goto fail;
	if (r->dir == BR_OUT) {
		amqp_confirm_select(l->c, CH);
		if (!rpc_ok(l->c, "confirm.select", r))
			goto fail;
		l->next_tag = 1;
	} else if (!declare_in(l->c, r)) {
		goto fail;
	}
	free(buf);
	return l;
fail:
	if (l && l->c)
		amqp_destroy_connection(l->c);
	free(l);
	free(buf);
	return NULL;
}

static void amqp_goodbye(struct br_link *l)
{
	struct timeval tv = { 2, 0 };

	if (!l)
		return;
	amqp_set_rpc_timeout(l->c, &tv);
	/* connection.close waits for close-ok: the broker has read and
	 * handled every frame before it */
	amqp_connection_close(l->c, AMQP_REPLY_SUCCESS);
}

static void amqp_close(struct br_link *l)
{
	if (!l)
		return;
	free(l->body.bytes);
	/* no goodbye: a broken socket must not block the close */
	amqp_destroy_connection(l->c);
	free(l);
}

/* ---- out ------------------------------------------------------------ */

/* Whether @m has a header named @key. */
static bool has_header(const struct br_msg *m, const char *key)
{
	size_t n = strlen(key);

	for (unsigned i = 0; i < m->nr_headers; i++)
		if (m->headers[i].klen == n &&
		    !memcmp(m->headers[i].key, key, n))
			return true;
	return false;
}

/* The connection broke under a wait (@err: librabbitmq's status): say
 * why (a heartbeat missed, the socket closed or timed out). -1. */
static int lost(struct br_link *l, int err)
{
	fprintf(stderr, "shmbus-bridge: %s: connection lost: %s\n", l->name,
		amqp_error_string2(err));
	return -1;
}

static int amqp_publish(struct br_link *l, const char *exchange,
			const char *key, const struct br_msg *m, uint64_t *tag)
{
	amqp_table_entry_t hdr[BR_MAX_HEADERS + 1];
	char exp[24];
	int r;
	amqp_basic_properties_t p = {
		._flags = AMQP_BASIC_DELIVERY_MODE_FLAG |
			  AMQP_BASIC_HEADERS_FLAG,
		.delivery_mode = 2,
	};

	for (unsigned i = 0; i < m->nr_headers; i++) {
		hdr[i].key = (amqp_bytes_t){ m->headers[i].klen,
					     (void *)m->headers[i].key };
		hdr[i].value.kind = AMQP_FIELD_KIND_UTF8;
		hdr[i].value.value.bytes = (amqp_bytes_t){
			m->headers[i].vlen, (void *)m->headers[i].val };
	}
	p.headers.entries = hdr;
	p.headers.num_entries = (int)m->nr_headers;
	/* deliveries before this one, as a quorum queue counts them */
	if (m->delivery_count > 1 && !has_header(m, "x-delivery-count")) {
		hdr[p.headers.num_entries].key =
			amqp_cstring_bytes("x-delivery-count");
		hdr[p.headers.num_entries].value.kind = AMQP_FIELD_KIND_I64;
		hdr[p.headers.num_entries++].value.value.i64 =
			m->delivery_count - 1;
	}
	if (m->message_id[0]) {
		p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
		p.message_id = amqp_cstring_bytes(m->message_id);
	}
	if (m->correlation_id[0]) {
		p._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
		p.correlation_id = amqp_cstring_bytes(m->correlation_id);
	}
	if (m->reply_to[0]) {
		p._flags |= AMQP_BASIC_REPLY_TO_FLAG;
		p.reply_to = amqp_cstring_bytes(m->reply_to);
	}
	if (m->expiration_ms >= 0) {
		snprintf(exp, sizeof(exp), "%lld", (long long)m->expiration_ms);
		p._flags |= AMQP_BASIC_EXPIRATION_FLAG;
		p.expiration = amqp_cstring_bytes(exp);
	}
	r = amqp_basic_publish(l->c, CH, amqp_cstring_bytes(exchange),
			       amqp_cstring_bytes(key), 0, 0, &p,
			       (amqp_bytes_t){ m->len, (void *)m->body });
	if (r)
		return lost(l, r);
	*tag = l->next_tag++;
	return 0;
}

/* A method frame that is not a delivery: a confirm, or the end. */
static int method_event(amqp_frame_t *f, struct br_event *ev)
{
	switch (f->payload.method.id) {
	case AMQP_BASIC_ACK_METHOD: {
		amqp_basic_ack_t *a = f->payload.method.decoded;

		ev->kind = BR_EV_ACK;
		ev->tag = a->delivery_tag;
		ev->multiple = a->multiple;
		return 1;
	}
	case AMQP_BASIC_NACK_METHOD: {
		amqp_basic_nack_t *a = f->payload.method.decoded;

		ev->kind = BR_EV_NACK;
		ev->tag = a->delivery_tag;
		ev->multiple = a->multiple;
		return 1;
	}
	case AMQP_CHANNEL_CLOSE_METHOD: {
		amqp_channel_close_t *cl = f->payload.method.decoded;

		fprintf(stderr, "shmbus-bridge: the broker closed the "
			"channel: %.*s\n", (int)cl->reply_text.len,
			(char *)cl->reply_text.bytes);
		return -1;
	}
	case AMQP_CONNECTION_CLOSE_METHOD: {
		amqp_connection_close_t *cl = f->payload.method.decoded;

		fprintf(stderr, "shmbus-bridge: the broker closed the "
			"connection: %.*s\n", (int)cl->reply_text.len,
			(char *)cl->reply_text.bytes);
		return -1;
	}
	case AMQP_CONNECTION_BLOCKED_METHOD: {
		amqp_connection_blocked_t *b = f->payload.method.decoded;

		fprintf(stderr, "shmbus-bridge: the broker blocks publishing: "
			"%.*s\n", (int)b->reason.len, (char *)b->reason.bytes);
		ev->kind = BR_EV_BLOCKED;
		return 1;
	}
	case AMQP_CONNECTION_UNBLOCKED_METHOD:
		fprintf(stderr, "shmbus-bridge: the broker unblocks "
			"publishing\n");
		ev->kind = BR_EV_UNBLOCKED;
		return 1;
	case AMQP_BASIC_CANCEL_METHOD:
		/* the queue was deleted under an in link */
		fprintf(stderr, "shmbus-bridge: the broker cancelled the "
			"consumer\n");
		return -1;
	default:
		return 0;
	}
}

/* ---- in ------------------------------------------------------------- */

/* Text of at most @max bytes in the link's scratch, or NULL if full. */
static const char *scratch(struct br_link *l, const void *p, size_t n)
{
	char *s;

	if (l->used + n + 1 > sizeof(l->scratch))
		return NULL;
	s = l->scratch + l->used;
	if (n)
		memcpy(s, p, n);
	s[n] = '\0';
	l->used += n + 1;
	return s;
}

static void copy_prop(char *dst, size_t cap, amqp_bytes_t b)
{
	size_t n = b.len < cap - 1 ? b.len : cap - 1;

	if (n)	/* an empty property may have no bytes at all */
		memcpy(dst, b.bytes, n);
	dst[n] = '\0';
}

/*
 * A delivery's text that must stay whole or go: false (and "") if it has
 * a NUL, whose cut would make it another one (a message id is the local
 * dedup id).
 */
static bool copy_whole(char *dst, size_t cap, amqp_bytes_t b)
{
	if (b.len && memchr(b.bytes, '\0', b.len)) {
		dst[0] = '\0';
		return false;
	}
	copy_prop(dst, cap, b);
	return true;
}

/*
 * An AMQP expiration: a decimal number of ms, or -1 for anything else
 * (RabbitMQ refuses others at the publish; a broker that sends one gets
 * the message delivered without one, not expired). At most 2^63 ns.
 */
static int64_t expiration_ms(amqp_bytes_t b)
{
	const char *s = b.bytes;
	int64_t v = 0;

	if (!b.len)
		return -1;
	for (size_t i = 0; i < b.len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v < INT64_MAX / 1000000)
			v = v * 10 + (s[i] - '0');
	}
	return v < INT64_MAX / 1000000 ? v : INT64_MAX / 1000000;
}

static void add_header(struct br_msg *m, const char *k, size_t klen,
		       const void *v, size_t vlen)
{
	if (m->nr_headers == BR_MAX_HEADERS || !v)
		return;
	m->headers[m->nr_headers++] = (struct br_kv){ k, klen, v, vlen };
}

/* A field value as text, or NULL: strings as they are, numbers and
 * booleans printed. */
static const char *field_text(struct br_link *l, const amqp_field_value_t *v,
			      size_t *len)
{
	char num[32];
	int n;

	switch (v->kind) {
	case AMQP_FIELD_KIND_UTF8:
	case AMQP_FIELD_KIND_BYTES:
		*len = v->value.bytes.len;
		return v->value.bytes.len ? v->value.bytes.bytes : "";
	case AMQP_FIELD_KIND_BOOLEAN:
		n = snprintf(num, sizeof(num), "%s",
			     v->value.boolean ? "true" : "false");
		break;
	case AMQP_FIELD_KIND_I8: n = snprintf(num, sizeof(num), "%d", v->value.i8); break;
	case AMQP_FIELD_KIND_U8: n = snprintf(num, sizeof(num), "%u", v->value.u8); break;
	case AMQP_FIELD_KIND_I16: n = snprintf(num, sizeof(num), "%d", v->value.i16); break;
	case AMQP_FIELD_KIND_U16: n = snprintf(num, sizeof(num), "%u", v->value.u16); break;
	case AMQP_FIELD_KIND_I32: n = snprintf(num, sizeof(num), "%d", v->value.i32); break;
	case AMQP_FIELD_KIND_U32: n = snprintf(num, sizeof(num), "%u", v->value.u32); break;
	case AMQP_FIELD_KIND_I64:
	case AMQP_FIELD_KIND_TIMESTAMP:
		n = snprintf(num, sizeof(num), "%lld", (long long)v->value.i64);
		break;
	case AMQP_FIELD_KIND_U64:
		n = snprintf(num, sizeof(num), "%llu",
			     (unsigned long long)v->value.u64);
		break;
	default:
		return NULL;	/* tables, arrays, floats, decimals */
	}
	*len = (size_t)n;
	return scratch(l, num, (size_t)n);
}

static const amqp_field_value_t *table_get(const amqp_table_t *t,
					   const char *key)
{
	size_t kl = strlen(key);

	for (int i = 0; i < t->num_entries; i++)
		if (t->entries[i].key.len == kl &&
		    !memcmp(t->entries[i].key.bytes, key, kl))
			return &t->entries[i].value;
	return NULL;
}

/*
 * x-death, the broker's dead-letter history (newest first): its first
 * entry becomes the attributes the bus gives its own dead letters,
 * dlq.reason (in the bus's words: delivery_limit is max-deliveries,
 * maxlen is overflow; rejected and expired are the same), dlq.source
 * (the queue) and dlq.deliveries (its count: how often it was
 * dead-lettered from that queue for that reason; the broker keeps no
 * delivery count there).
 */
static void x_death(struct br_link *l, struct br_msg *m,
		    const amqp_field_value_t *v)
{
	static const char *const names[][2] = {
		{ "reason", "dlq.reason" },
		{ "queue", "dlq.source" },
		{ "count", "dlq.deliveries" },
	};
	const amqp_table_t *e;

	if (v->kind != AMQP_FIELD_KIND_ARRAY || !v->value.array.num_entries ||
	    v->value.array.entries[0].kind != AMQP_FIELD_KIND_TABLE)
		return;
	e = &v->value.array.entries[0].value.table;
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const amqp_field_value_t *f = table_get(e, names[i][0]);
		const char *s;
		size_t n;

		if (!f || !(s = field_text(l, f, &n)))
			continue;
		if (i == 0 && n == 14 && !memcmp(s, "delivery_limit", 14))
			s = "max-deliveries", n = 14;
		else if (i == 0 && n == 6 && !memcmp(s, "maxlen", 6))
			s = "overflow", n = 8;
		add_header(m, names[i][1], strlen(names[i][1]), s, n);
	}
}

static void delivery_to_msg(struct br_link *l, struct br_msg *m)
{
	const amqp_basic_deliver_t *e = &l->dlv;
	amqp_basic_properties_t *p = l->props;

	memset(m, 0, sizeof(*m));
	l->used = 0;
	m->body = l->body.bytes;
	m->len = l->body.len;
	m->too_large = l->too_large;
	m->tag = e->delivery_tag;
	m->redelivered = e->redelivered;
	m->expiration_ms = -1;
	/* a key with a NUL: one no local name takes ({key}) */
	copy_prop(m->routing_key, sizeof(m->routing_key), e->routing_key);
	if (strlen(m->routing_key) != e->routing_key.len)
		for (size_t i = 0; i < e->routing_key.len; i++)
			if (!m->routing_key[i])
				m->routing_key[i] = '?';
	copy_prop(m->exchange, sizeof(m->exchange), e->exchange);
	if (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG)
		copy_whole(m->message_id, sizeof(m->message_id), p->message_id);
	if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG)
		copy_whole(m->correlation_id, sizeof(m->correlation_id),
			   p->correlation_id);
	if (p->_flags & AMQP_BASIC_REPLY_TO_FLAG)
		copy_prop(m->reply_to, sizeof(m->reply_to), p->reply_to);
	if (p->_flags & AMQP_BASIC_EXPIRATION_FLAG)
		m->expiration_ms = expiration_ms(p->expiration);
	if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
		return;
	for (int i = 0; i < p->headers.num_entries; i++) {
		amqp_table_entry_t *h = &p->headers.entries[i];
		const char *s;
		size_t n;

		if (h->key.len == 7 && !memcmp(h->key.bytes, "x-death", 7)) {
			x_death(l, m, &h->value);
			continue;
		}
		if (h->key.len == 16 &&
		    !memcmp(h->key.bytes, "x-delivery-count", 16)) {
			/* quorum queues: deliveries before this one */
			if ((s = field_text(l, &h->value, &n)))
				m->delivery_count = (uint32_t)strtoul(s, NULL, 10) + 1;
			continue;
		}
		s = field_text(l, &h->value, &n);
		if (s)
			add_header(m, h->key.bytes, h->key.len, s, n);
	}
}

/*
 * Wait up to *@tv for the socket to have something to read; if it has
 * not, make *@tv zero. librabbitmq rounds what is left of a wait down to
 * whole milliseconds and then polls with 0 until the deadline: the last
 * millisecond of every wait is a busy loop, and a route that waits 1 ms
 * at a time (a full local queue) spins a CPU. So the wait is ours, and
 * librabbitmq only reads what came (and sends a heartbeat that is due).
 * Not for TLS, whose buffered records a poll of the socket does not see.
 */
static void wait_readable(struct br_link *l, struct timeval *tv)
{
	struct pollfd p = { .fd = amqp_get_sockfd(l->c), .events = POLLIN };
	int ms = (int)(tv->tv_sec * 1000 + tv->tv_usec / 1000);

	if (l->tls || !ms || p.fd < 0 || amqp_frames_enqueued(l->c) ||
	    amqp_data_in_buffer(l->c))
		return;
	if (poll(&p, 1, ms) == 0)
		*tv = (struct timeval){ 0, 0 };
}

/* The next frame of a delivery: AMQP_STATUS_OK, or an error (a broker
 * that stops in the middle of a message is given up as a silent one). */
static int content_frame(struct br_link *l, amqp_frame_t *f)
{
	struct timeval tv = l->rpc_tmo;

	return amqp_simple_wait_frame_noblock(l->c, f, &tv);
}

/*
 * The content of delivery @d: its header frame and body frames. Not
 * amqp_consume_message(): it refuses (and leaves on the socket) a
 * message whose headers librabbitmq cannot copy, an empty key among
 * them, so such a message, which RabbitMQ takes from any client, would
 * break the link at each delivery, for ever; and it reads any body
 * whole into memory. Here the properties stay where they were decoded,
 * and a body over the link's max_body is read and thrown away (the
 * route rejects the delivery). 0, or -1 when the link is broken.
 */
static int read_content(struct br_link *l, const amqp_basic_deliver_t *d)
{
	uint64_t size, got = 0;
	amqp_frame_t f;

	if (content_frame(l, &f) != AMQP_STATUS_OK ||
	    f.frame_type != AMQP_FRAME_HEADER ||
	    f.payload.properties.class_id != AMQP_BASIC_CLASS) {
		fprintf(stderr, "shmbus-bridge: %s: a delivery without its "
			"header\n", l->queue);
		return -1;
	}
	l->dlv = *d;
	l->props = f.payload.properties.decoded;
	size = f.payload.properties.body_size;
	l->too_large = size > l->max_body;
	l->body = (amqp_bytes_t){ 0, NULL };
	if (!l->too_large && size) {
		l->body.bytes = malloc(size);
		if (!l->body.bytes)
			return -1;
		l->body.len = size;
	}
	while (got < size) {
		size_t n;

		if (content_frame(l, &f) !=
		    AMQP_STATUS_OK)
			return -1;
		n = f.payload.body_fragment.len;
		if (f.frame_type != AMQP_FRAME_BODY || n > size - got) {
			fprintf(stderr, "shmbus-bridge: %s: a delivery's body "
				"does not match its size\n", l->queue);
			return -1;
		}
		if (l->body.bytes)
			memcpy((char *)l->body.bytes + got,
			       f.payload.body_fragment.bytes, n);
		got += n;
	}
	if (l->too_large)
		l->body.len = size > SIZE_MAX ? SIZE_MAX : (size_t)size;
	return 0;
}

static int amqp_next(struct br_link *l, struct br_event *ev, int timeout_ms)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	amqp_frame_t f;
	int r;

	free(l->body.bytes);
	l->body = (amqp_bytes_t){ 0, NULL };
	/* not over frames a queue.declare (amqp_depth) set aside: they
	 * are in the pools a release recycles */
	if (!amqp_frames_enqueued(l->c))
		amqp_maybe_release_buffers(l->c);
	wait_readable(l, &tv);
	r = amqp_simple_wait_frame_noblock(l->c, &f, &tv);
	if (r == AMQP_STATUS_TIMEOUT)
		return 0;
	if (r != AMQP_STATUS_OK)
		return lost(l, r);
	if (f.frame_type != AMQP_FRAME_METHOD)
		return 0;
	if (l->dir == BR_OUT ||
	    f.payload.method.id != AMQP_BASIC_DELIVER_METHOD)
		return method_event(&f, ev);
	if (read_content(l, f.payload.method.decoded) < 0) {
		free(l->body.bytes);
		l->body = (amqp_bytes_t){ 0, NULL };
		return -1;
	}
	ev->kind = BR_EV_DELIVERY;
	delivery_to_msg(l, &ev->msg);
	ev->tag = ev->msg.tag;
	return 1;
}

static int amqp_settle(struct br_link *l, uint64_t tag, bool multiple,
		       enum br_settle how)
{
	int r;

	if (how == BR_ACK)
		r = amqp_basic_ack(l->c, CH, tag, multiple);
	else
		r = amqp_basic_nack(l->c, CH, tag, multiple,
				    how == BR_REQUEUE);
	return r ? -1 : 0;
}

/* A passive queue.declare on the link's channel: the deliveries that
 * arrive meanwhile are kept by librabbitmq for the next wait. */
static int amqp_depth(struct br_link *l, uint64_t *n)
{
	amqp_queue_declare_ok_t *ok;

	if (!l->queue[0])
		return -1;
	ok = amqp_queue_declare(l->c, CH, amqp_cstring_bytes(l->queue), 1, 0,
				0, 0, amqp_empty_table);
	if (!ok)
		return -1;
	*n = ok->message_count;
	return 0;
}

static void amqp_wait(struct br_link *l, int fd, int timeout_ms)
{
	struct pollfd p[2] = {
		{ .fd = amqp_get_sockfd(l->c), .events = POLLIN },
		{ .fd = fd, .events = POLLIN },
	};

	/* frames librabbitmq has read already do not show on the socket */
	if (amqp_frames_enqueued(l->c) || amqp_data_in_buffer(l->c))
		return;
	poll(p, 2, timeout_ms);
}

static const struct br_broker amqp_broker = {
	.name = "amqp",
	.accepts = amqp_accepts,
	.open = amqp_open,
	.publish = amqp_publish,
	.next = amqp_next,
	.settle = amqp_settle,
	.wait = amqp_wait,
	.goodbye = amqp_goodbye,
	.close = amqp_close,
	.depth = amqp_depth,
};

const struct br_broker *br_broker_for(const char *url)
{
	return amqp_broker.accepts(url) ? &amqp_broker : NULL;
}

/* Whether @url parses as an AMQP URL (for conf.c's checks). */
bool br_amqp_url_ok(const char *url)
{
	struct amqp_connection_info u;
	char *buf = strdup(url);
	bool ok;

	if (!buf)
		return false;
	ok = amqp_parse_url(buf, &u) == AMQP_STATUS_OK;
	free(buf);
	return ok;
}
