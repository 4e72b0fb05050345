// SPDX-License-Identifier: MIT
/*
 * crc32c.c - CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * per-message checksum of queues declared with SHMBUS_QUEUE_CHECKSUM.
 *
 * Two implementations with one result: the SSE4.2 crc32 instruction (8
 * bytes per instruction), chosen at run time when the CPU has it, and a
 * slicing-by-8 table walk everywhere else. Both are exported to the tests
 * (unit_crc32c checks each against the published vectors).
 *
 * What a message's checksum covers, in this order (chunk_checksum()):
 * len (4 bytes), attr_len (2), corr_id (8), reply_to (4), each little
 * endian, then the len payload bytes, then the attr_len attribute bytes.
 * The fields the bus itself changes while a message travels (owner,
 * delivery and dead-letter counts, expiry, flags) are not covered, nor is
 * the message id (it only names the message).
 */
#include <endian.h>
#include <string.h>

#include "internal.h"

#define CRC32C_POLY	0x82F63B78u

static uint32_t table[8][256];

/* Built when the library is loaded, before any thread of the program
 * can call in: no once-flag on the path. */
__attribute__((constructor)) static void table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^
				      table[0][table[t - 1][i] & 0xff];
}

uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
	while (len && ((uintptr_t)p & 7)) {
		crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		w = htole64(w) ^ crc;
		crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^
		      table[5][(w >> 16) & 0xff] ^ table[4][(w >> 24) & 0xff] ^
		      table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
		      table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t c = ~crc;

	while (len && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
		len--;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return ~(uint32_t)c;
}

bool crc32c_hw_available(void)
{
	return __builtin_cpu_supports("sse4.2");
}

uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	return crc32c_hw_available() ? crc32c_sse42(crc, buf, len)
				     : crc32c_sw(crc, buf, len);
}
#else
bool crc32c_hw_available(void)
{
	return false;
}

uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	return crc32c_sw(crc, buf, len);
}
#endif

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	return crc32c_hw(crc, buf, len);
}

uint32_t chunk_checksum(const struct shmbus_chunk *c, uint32_t len,
			uint32_t attr_len)
{
	const uint8_t *payload = (const uint8_t *)c + SHMBUS_CHUNK_HDR;
	uint8_t hdr[18];
	uint32_t v32, crc;
	uint64_t v64;
	uint16_t v16;

	v32 = htole32(len);
	memcpy(hdr, &v32, 4);
	v16 = htole16((uint16_t)attr_len);
	memcpy(hdr + 4, &v16, 2);
	v64 = htole64(READ_ONCE(c->corr_id));
	memcpy(hdr + 6, &v64, 8);
	v32 = htole32(READ_ONCE(c->reply_to));
	memcpy(hdr + 14, &v32, 4);
	crc = crc32c(0, hdr, sizeof(hdr));
	crc = crc32c(crc, payload, len);
	if (attr_len)
		crc = crc32c(crc, payload + ALIGN_UP((uint64_t)len, 8),
			     attr_len);
	return crc;
}
