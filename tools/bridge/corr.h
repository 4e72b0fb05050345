/* SPDX-License-Identifier: MIT */
/*
 * corr.h - the AMQP correlation-id of a request the bridge forwards:
 *
 *	shmbus:QID.GEN.CORR.MAC
 *
 * QID the requester's reply queue id + 1, GEN its generation, CORR the
 * requester's correlation id (decimal), MAC the first 16 hex digits of
 * HMAC-SHA256 over "QID.GEN.CORR" with the bridge's key. An AMQP RPC
 * server echoes the correlation-id in its reply, so the reply carries
 * back everything the bridge needs to route it to the requester: the
 * bridge keeps no state per request. The MAC makes a correlation id the
 * bridge did not make (forged, garbled, from another bridge) fail the
 * decode, so a reply can only reach a queue a request named.
 *
 * Header-only, so that tests can check it without the bridge.
 */
#ifndef SHMBUS_BRIDGE_CORR_H
#define SHMBUS_BRIDGE_CORR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define BR_CORR_PREFIX	"shmbus:"
#define BR_CORR_KEY	32	/* bytes of key */
#define BR_CORR_MAC	16	/* hex digits of MAC */
#define BR_CORR_MAX	80	/* the longest encoding, with its NUL */

static inline void br_corr_mac(const uint8_t *key, const char *text,
			       size_t n, char out[BR_CORR_MAC + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!HMAC(EVP_sha256(), key, BR_CORR_KEY, (const unsigned char *)text,
		  n, md, &mdlen) || mdlen < BR_CORR_MAC / 2)
		memset(md, 0, sizeof(md));	/* matches nothing honest */
	for (int i = 0; i < BR_CORR_MAC / 2; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[BR_CORR_MAC] = '\0';
}

/* Encode into @buf (BR_CORR_MAX bytes). */
static inline void br_corr_encode(char buf[BR_CORR_MAX], const uint8_t *key,
				  uint32_t qid1, uint32_t gen, uint64_t corr)
{
	char text[48], mac[BR_CORR_MAC + 1];
	int n = snprintf(text, sizeof(text), "%u.%u.%llu", qid1, gen,
			 (unsigned long long)corr);

	br_corr_mac(key, text, (size_t)n, mac);
	snprintf(buf, BR_CORR_MAX, BR_CORR_PREFIX "%s.%s", text, mac);
}

/* A decimal of at most @max at *@s, up to '.': plain digits only, no
 * sign, no leading zero but "0" itself. */
static inline bool br_corr_num(const char **s, uint64_t max, uint64_t *out)
{
	const char *p = *s;
	uint64_t v = 0;

	if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (*p != '.')
		return false;
	*out = v;
	*s = p + 1;
	return true;
}

/*
 * Decode @s (@len bytes, not NUL-terminated): true and the fields, or
 * false for anything the bridge with @key did not encode.
 */
static inline bool br_corr_decode(const char *s, size_t len,
				  const uint8_t *key, uint32_t *qid1,
				  uint32_t *gen, uint64_t *corr)
{
	const size_t pre = sizeof(BR_CORR_PREFIX) - 1;
	char buf[BR_CORR_MAX], mac[BR_CORR_MAC + 1];
	const char *p, *text;
	uint64_t q, g, c;

	if (len <= pre || len >= sizeof(buf) || memchr(s, '\0', len))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (memcmp(buf, BR_CORR_PREFIX, pre))
		return false;
	p = text = buf + pre;
	if (!br_corr_num(&p, UINT32_MAX, &q) || !q ||
	    !br_corr_num(&p, UINT32_MAX, &g) ||
	    !br_corr_num(&p, UINT64_MAX, &c) ||
	    strlen(p) != BR_CORR_MAC)
		return false;
	br_corr_mac(key, text, (size_t)(p - 1 - text), mac);
	if (CRYPTO_memcmp(mac, p, BR_CORR_MAC))
		return false;
	*qid1 = (uint32_t)q;
	*gen = (uint32_t)g;
	*corr = c;
	return true;
}

#endif /* SHMBUS_BRIDGE_CORR_H */
