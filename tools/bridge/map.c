// SPDX-License-Identifier: MIT
/*
 * map.c - shmbus messages to and from the neutral form (struct br_msg).
 *
 * A local message carries across: its payload, its id as the broker's
 * message id (the same at every delivery, so a consumer there can drop
 * the duplicates at-least-once brings), its correlation id, what is left
 * of its TTL, its delivery count, and its attributes as headers (a dead
 * letter's dlq.* attributes among them).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bridge.h"

void br_from_shmbus(struct br_msg *out, const struct shmbus_msg *m)
{
	uint32_t it = 0;

	memset(out, 0, sizeof(*out));
	out->body = m->data;
	out->len = m->len;
	out->expiration_ms = -1;
	if (m->expires_ns) {
		/* what is left of its TTL, rounded up: 0 if it ran out
		 * since it was received (the broker then drops it unless
		 * a consumer takes it at once) */
		struct timespec ts;
		int64_t left;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		left = (int64_t)m->expires_ns -
		       ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
		out->expiration_ms = left > 0 ? (left + 999999) / 1000000 : 0;
	}
	out->delivery_count = m->delivery_count;
	out->redelivered = m->delivery_count > 1;
	snprintf(out->message_id, sizeof(out->message_id), "%llu",
		 (unsigned long long)m->id);
	if (m->corr_id)
		snprintf(out->correlation_id, sizeof(out->correlation_id),
			 "%llu", (unsigned long long)m->corr_id);
	/* a malformed block ends the list where it breaks */
	while (out->nr_headers < BR_MAX_HEADERS) {
		struct br_kv *kv = &out->headers[out->nr_headers];
		const char *key;
		const void *val;

		if (shmbus_msg__attr_next(m, &it, &key, &kv->klen, &val,
					  &kv->vlen) != 1)
			break;
		kv->key = key;
		kv->val = val;
		out->nr_headers++;
	}
}

/*
 * A deep copy of @src, its body, headers and all, in one allocation that
 * @dst->body points to (free((void *)dst->body)). 0, or -ENOMEM. Header
 * keys and values are NUL-terminated in the copy.
 */
int br_msg_copy(struct br_msg *dst, const struct br_msg *src)
{
	size_t need = src->len + 1;
	char *buf, *p;

	for (unsigned i = 0; i < src->nr_headers; i++)
		need += src->headers[i].klen + src->headers[i].vlen + 2;
	buf = malloc(need);
	if (!buf)
		return -ENOMEM;
	*dst = *src;
	p = buf;
	if (src->len)	/* an empty body may have no bytes at all */
		memcpy(p, src->body, src->len);
	p[src->len] = '\0';
	dst->body = p;
	p += src->len + 1;
	for (unsigned i = 0; i < src->nr_headers; i++) {
		const struct br_kv *s = &src->headers[i];
		struct br_kv *d = &dst->headers[i];

		if (s->klen)
			memcpy(p, s->key, s->klen);
		p[s->klen] = '\0';
		d->key = p;
		p += s->klen + 1;
		if (s->vlen)
			memcpy(p, s->val, s->vlen);
		p[s->vlen] = '\0';
		d->val = p;
		p += s->vlen + 1;
	}
	return 0;
}
