// SPDX-License-Identifier: MIT
/*
 * attr.c - message attributes (headers): encoding at publish, appending
 * (dead-letter marks), and reading in place. The format is in
 * shmbus/layout.h; every record read is checked against the block's
 * length, which take() checked against the chunk.
 */
#include <stdio.h>
#include <string.h>

#include "attr.h"

int attr_size(const struct shmbus_attr *attrs, uint32_t n, uint32_t *size)
{
	uint64_t total = 0;

	if (n && !attrs)
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		size_t kl = attrs[i].key ? strlen(attrs[i].key) : 0;

		if (kl < 1 || kl > 255 || attrs[i].value_len > 0xffff ||
		    (attrs[i].value_len && !attrs[i].value))
			return -EINVAL;
		total += SHMBUS_ATTR_REC_HDR + kl + attrs[i].value_len;
	}
	if (total > SHMBUS_ATTR_BYTES)
		return -E2BIG;
	*size = (uint32_t)total;
	return 0;
}

void attr_encode(uint8_t *dst, const struct shmbus_attr *attrs, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		size_t kl = strlen(attrs[i].key);
		uint16_t vl = (uint16_t)attrs[i].value_len;

		dst[0] = (uint8_t)kl;
		dst[1] = 0;
		memcpy(dst + 2, &vl, sizeof(vl));
		memcpy(dst + SHMBUS_ATTR_REC_HDR, attrs[i].key, kl);
		if (vl)
			memcpy(dst + SHMBUS_ATTR_REC_HDR + kl, attrs[i].value, vl);
		dst += SHMBUS_ATTR_REC_HDR + kl + vl;
	}
}

int attr_append(struct shmbus_chunk *c, uint32_t payload_max, const char *key,
		const void *val, uint16_t vlen)
{
	uint64_t at = ALIGN_UP((uint64_t)c->len, 8) + c->attr_len;
	size_t kl = strlen(key);
	uint8_t *p;

	if (at + SHMBUS_ATTR_REC_HDR + kl + vlen > payload_max ||
	    c->attr_len + SHMBUS_ATTR_REC_HDR + kl + vlen > 0xffff)
		return -ENOSPC;
	p = chunk_payload(c) + at;
	p[0] = (uint8_t)kl;
	p[1] = 0;
	memcpy(p + 2, &vlen, sizeof(vlen));
	memcpy(p + SHMBUS_ATTR_REC_HDR, key, kl);
	memcpy(p + SHMBUS_ATTR_REC_HDR + kl, val, vlen);
	c->attr_len = (uint16_t)(c->attr_len + SHMBUS_ATTR_REC_HDR + kl + vlen);
	return 0;
}

static const char *const reasons[] = {
	[SHMBUS_DLR_MAX_DELIVERIES] = "max-deliveries",
	[SHMBUS_DLR_EXPIRED] = "expired",
	[SHMBUS_DLR_REJECTED] = "rejected",
	[SHMBUS_DLR_OVERFLOW] = "overflow",
	[SHMBUS_DLR_CHECKSUM] = "checksum",
};

void attr_dead_letter(struct shmbus_chunk *c, uint32_t payload_max,
		      uint32_t reason, const char *src, uint32_t count)
{
	char num[16];
	int n = snprintf(num, sizeof(num), "%u", count);

	if (reason >= sizeof(reasons) / sizeof(reasons[0]) || !reasons[reason])
		return;
	/* all three or none: a partial set would mislead */
	if (ALIGN_UP((uint64_t)c->len, 8) + c->attr_len + 3 * SHMBUS_ATTR_REC_HDR +
	    strlen("dlq.reason") + strlen(reasons[reason]) +
	    strlen("dlq.source") + strnlen(src, SHMBUS_NAME_MAX) +
	    strlen("dlq.deliveries") + (size_t)n > payload_max)
		return;
	attr_append(c, payload_max, "dlq.reason", reasons[reason],
		    (uint16_t)strlen(reasons[reason]));
	attr_append(c, payload_max, "dlq.source", src,
		    (uint16_t)strnlen(src, SHMBUS_NAME_MAX - 1));
	attr_append(c, payload_max, "dlq.deliveries", num, (uint16_t)n);
}

SHMBUS_API int shmbus_msg__attr_next(const struct shmbus_msg *msg,
				     uint32_t *it, const char **key,
				     size_t *klen, const void **value,
				     size_t *vlen)
{
	const uint8_t *b;
	uint32_t off, kl;
	uint16_t vl;

	if (!msg || !it)
		return -EINVAL;
	off = *it;
	if (off >= msg->__attr_len)
		return 0;
	b = (const uint8_t *)msg->__attrs + off;
	if (msg->__attr_len - off < SHMBUS_ATTR_REC_HDR)
		return -EBADMSG;
	kl = b[0];
	memcpy(&vl, b + 2, sizeof(vl));
	if (!kl || SHMBUS_ATTR_REC_HDR + kl + vl > msg->__attr_len - off)
		return -EBADMSG;
	if (key)
		*key = (const char *)b + SHMBUS_ATTR_REC_HDR;
	if (klen)
		*klen = kl;
	if (value)
		*value = b + SHMBUS_ATTR_REC_HDR + kl;
	if (vlen)
		*vlen = vl;
	*it = off + SHMBUS_ATTR_REC_HDR + kl + vl;
	return 1;
}

SHMBUS_API int shmbus_msg__attr(const struct shmbus_msg *msg, const char *key,
				const void **value, size_t *len)
{
	size_t want = key ? strlen(key) : 0, kl, vl;
	const void *v;
	const char *k;
	uint32_t it = 0;
	int r;

	if (!msg || !key)
		return -EINVAL;
	while ((r = shmbus_msg__attr_next(msg, &it, &k, &kl, &v, &vl)) == 1) {
		if (kl == want && !memcmp(k, key, kl)) {
			if (value)
				*value = v;
			if (len)
				*len = vl;
			return 0;
		}
	}
	return r < 0 ? r : -ENOENT;
}
