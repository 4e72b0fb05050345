/* SPDX-License-Identifier: MIT */
/*
 * attr.h - message attributes: the encoding (shmbus/layout.h) as the
 * library and the daemon write it.
 */
#ifndef SHMBUS_ATTR_H
#define SHMBUS_ATTR_H

#include "internal.h"

/* Encoded size of @n attributes: 0, or -EINVAL (a bad key or value),
 * -E2BIG (over SHMBUS_ATTR_BYTES). */
int attr_size(const struct shmbus_attr *attrs, uint32_t n, uint32_t *size);

/* Write @n checked attributes at @dst. */
void attr_encode(uint8_t *dst, const struct shmbus_attr *attrs, uint32_t n);

/* Append one attribute to chunk @c (ours) if it fits: 0 or -ENOSPC. */
int attr_append(struct shmbus_chunk *c, uint32_t payload_max, const char *key,
		const void *val, uint16_t vlen);

/* The dead-letter attributes (dlq.reason, dlq.source, dlq.deliveries),
 * all three if they fit, none otherwise. */
SHMBUS_PRIVATE_API
void attr_dead_letter(struct shmbus_chunk *c, uint32_t payload_max,
		      uint32_t reason, const char *src, uint32_t count);

#endif /* SHMBUS_ATTR_H */
