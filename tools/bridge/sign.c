// SPDX-License-Identifier: MIT
/*
 * sign.c - HMAC-SHA256 signatures of messages between bridges, and the
 * dead-lettering of those that fail them.
 *
 * An out route with a key adds the header BR_SIG_HEADER, "v1=" and the
 * HMAC in lowercase hex; an in route with the same key recomputes it
 * over what it received. The HMAC covers an encoding of the message that
 * has one reading only (docs/bridge.md, "Signatures", is the reference):
 * every field is its length as 8 bytes big-endian, then its bytes:
 *
 *	"shmbus-hmac-sha256-v1"
 *	message-id, correlation-id, reply-to, expiration (its decimal
 *	text); a property that is absent is the empty string
 *	the number of headers covered (8 bytes big-endian), then each
 *	one's key and value, sorted by key, then value, bytewise
 *	the body
 *
 * Headers whose key starts with "x-" (the broker's: x-death,
 * x-delivery-count, ..., and the signature) or "dlq." (dead-lettering
 * facts, added by whoever dead-letters the message) are not covered:
 * brokers and buses add them on the way.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "bridge.h"

#define SIG_TAG		"shmbus-hmac-sha256-v1"
#define SIG_PREFIX	"v1="
#define SIG_BYTES	32

static EVP_MAC *hmac;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_fetch(void)
{
	hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static bool covered(const struct br_kv *h)
{
	return !(h->klen >= 2 && !memcmp(h->key, "x-", 2)) &&
	       !(h->klen >= 4 && !memcmp(h->key, "dlq.", 4));
}

static int bytes_cmp(const void *a, size_t an, const void *b, size_t bn)
{
	int c = memcmp(a, b, an < bn ? an : bn);

	if (c)
		return c;
	return an < bn ? -1 : an > bn;
}

static int kv_cmp(const void *pa, const void *pb)
{
	const struct br_kv *a = *(const struct br_kv *const *)pa;
	const struct br_kv *b = *(const struct br_kv *const *)pb;
	int c = bytes_cmp(a->key, a->klen, b->key, b->klen);

	return c ? c : bytes_cmp(a->val, a->vlen, b->val, b->vlen);
}

static void put_len(EVP_MAC_CTX *ctx, uint64_t n)
{
	unsigned char be[8];

	for (int i = 0; i < 8; i++)
		be[i] = (unsigned char)(n >> (56 - 8 * i));
	EVP_MAC_update(ctx, be, sizeof(be));
}

static void put(EVP_MAC_CTX *ctx, const void *p, size_t n)
{
	put_len(ctx, n);
	if (n)
		EVP_MAC_update(ctx, p, n);
}

static void put_str(EVP_MAC_CTX *ctx, const char *s)
{
	put(ctx, s, strlen(s));
}

/* The HMAC of @m under @k into @mac: 0, or -ENOMEM (OpenSSL failed). */
static int compute(const struct br_key *k, const struct br_msg *m,
		   unsigned char mac[SIG_BYTES])
{
	const struct br_kv *h[BR_MAX_HEADERS];
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
						 "SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	EVP_MAC_CTX *ctx;
	char exp[24] = "";
	unsigned n = 0;
	size_t len = 0;
	int ok;

	pthread_once(&hmac_once, hmac_fetch);
	if (!hmac || !(ctx = EVP_MAC_CTX_new(hmac)))
		return -ENOMEM;
	ok = EVP_MAC_init(ctx, k->b, k->len, params);
	if (ok) {
		for (unsigned i = 0; i < m->nr_headers; i++)
			if (covered(&m->headers[i]))
				h[n++] = &m->headers[i];
		qsort(h, n, sizeof(h[0]), kv_cmp);
		if (m->expiration_ms >= 0)
			snprintf(exp, sizeof(exp), "%lld",
				 (long long)m->expiration_ms);
		put_str(ctx, SIG_TAG);
		put_str(ctx, m->message_id);
		put_str(ctx, m->correlation_id);
		put_str(ctx, m->reply_to);
		put_str(ctx, exp);
		put_len(ctx, n);
		for (unsigned i = 0; i < n; i++) {
			put(ctx, h[i]->key, h[i]->klen);
			put(ctx, h[i]->val, h[i]->vlen);
		}
		put(ctx, m->body, m->len);
		ok = EVP_MAC_final(ctx, mac, &len, SIG_BYTES) &&
		     len == SIG_BYTES;
	}
	EVP_MAC_CTX_free(ctx);
	return ok ? 0 : -ENOMEM;
}

/* Take header @i off @m. */
static void drop_header(struct br_msg *m, unsigned i)
{
	memmove(&m->headers[i], &m->headers[i + 1],
		(m->nr_headers - i - 1) * sizeof(m->headers[0]));
	m->nr_headers--;
}

static int sig_index(const struct br_msg *m, unsigned from)
{
	size_t n = strlen(BR_SIG_HEADER);

	for (unsigned i = from; i < m->nr_headers; i++)
		if (m->headers[i].klen == n &&
		    !memcmp(m->headers[i].key, BR_SIG_HEADER, n))
			return (int)i;
	return -1;
}

void br_sign(const struct br_key *k, struct br_msg *m,
	     char buf[BR_SIG_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char mac[SIG_BYTES];
	int i;

	while ((i = sig_index(m, 0)) >= 0)
		drop_header(m, (unsigned)i);
	/* the signature needs a slot: a full list leaves its last off */
	if (m->nr_headers == BR_MAX_HEADERS)
		m->nr_headers--;
	if (compute(k, m, mac)) {
		/* sent unsigned: the receiver dead-letters it */
		return;
	}
	memcpy(buf, SIG_PREFIX, 3);
	for (i = 0; i < SIG_BYTES; i++) {
		buf[3 + 2 * i] = hex[mac[i] >> 4];
		buf[4 + 2 * i] = hex[mac[i] & 15];
	}
	buf[BR_SIG_LEN] = '\0';
	m->headers[m->nr_headers++] = (struct br_kv){
		BR_SIG_HEADER, strlen(BR_SIG_HEADER), buf, BR_SIG_LEN };
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int br_verify(const struct br_key *k, struct br_msg *m)
{
	unsigned char want[SIG_BYTES], got[SIG_BYTES];
	const struct br_kv *h;
	const char *v;
	int i = sig_index(m, 0);

	if (i < 0)
		return -ENOMSG;
	h = &m->headers[i];
	v = h->val;
	/* one signature, of the one form */
	if (sig_index(m, (unsigned)i + 1) >= 0 || h->vlen != BR_SIG_LEN ||
	    memcmp(v, SIG_PREFIX, 3))
		return -EBADMSG;
	for (unsigned j = 0; j < SIG_BYTES; j++) {
		int hi = unhex(v[3 + 2 * j]), lo = unhex(v[4 + 2 * j]);

		if (hi < 0 || lo < 0)
			return -EBADMSG;
		got[j] = (unsigned char)(hi << 4 | lo);
	}
	drop_header(m, (unsigned)i);
	if (compute(k, m, want) || CRYPTO_memcmp(want, got, SIG_BYTES)) {
		/* back on: the dead letter shows what came */
		memmove(&m->headers[i + 1], &m->headers[i],
			(m->nr_headers - (unsigned)i) * sizeof(m->headers[0]));
		m->nr_headers++;
		return -EBADMSG;
	}
	return 0;
}

int br_dead_letter(struct shmbus *bus, const char *queue,
		   const struct br_msg *m, const char *reason)
{
	SHMBUS_OPTS(shmbus_producer_opts, po,
		    .confirm_timeout_ns = 5000000000LL);
	SHMBUS_OPTS(shmbus_pub_opts, o, .timeout_ns = 1000000000LL);
	struct shmbus_attr a[BR_MAX_HEADERS + 3];
	struct shmbus_queue_info qi;
	struct shmbus_producer *p;
	uint32_t n = 0, bytes;
	int err;

	if (shmbus__queue_info(bus, queue, &qi) || qi.kind != SHMBUS_QUEUE ||
	    !qi.dead_letter_queue[0])
		return -ENOENT;
	a[n++] = (struct shmbus_attr){ .key = "dlq.reason", .value = reason,
				       .value_len = (uint32_t)strlen(reason) };
	a[n++] = (struct shmbus_attr){ .key = "dlq.source", .value = queue,
				       .value_len = (uint32_t)strlen(queue) };
	bytes = 8 + 20 + a[0].value_len + a[1].value_len;
	/* then what came, up to the bus's budget (keys NUL-terminated:
	 * the in route's copies are) */
	if (m->message_id[0]) {
		a[n++] = (struct shmbus_attr){ .key = "amqp.message-id",
			.value = m->message_id,
			.value_len = (uint32_t)strlen(m->message_id) };
		bytes += 4 + 15 + a[n - 1].value_len;
	}
	for (unsigned i = 0; i < m->nr_headers; i++) {
		const struct br_kv *h = &m->headers[i];
		uint32_t cost = 4 + (uint32_t)(h->klen + h->vlen);
		bool sig = h->klen == strlen(BR_SIG_HEADER) &&
			   !memcmp(h->key, BR_SIG_HEADER, h->klen);

		/* not the dlq.* of an earlier life: ours replace them */
		if (!h->klen || h->klen > 255 || (!covered(h) && !sig))
			continue;
		if (bytes + cost > SHMBUS_ATTR_BYTES)
			break;
		a[n++] = (struct shmbus_attr){ .key = h->key, .value = h->val,
					       .value_len = (uint32_t)h->vlen };
		bytes += cost;
	}
	o.attrs = a;
	o.nr_attrs = n;
	p = shmbus_producer__new(bus, qi.dead_letter_queue, &po);
	if (!p)
		return -errno;
	/* a persistent queue: returns once journaled */
	err = shmbus_producer__publish(p, m->body, m->len, &o);
	shmbus_producer__free(p);
	return err;
}
