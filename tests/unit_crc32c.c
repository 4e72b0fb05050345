// SPDX-License-Identifier: MIT
/*
 * unit_crc32c.c - CRC32C, both implementations (the SSE4.2 instruction and
 * the table) against the published check values (RFC 3720 B.4, the
 * "123456789" check value), against each other over every length and
 * alignment up to 256 bytes and in pieces, and a message checksum that
 * changes with every covered byte and with no uncovered one.
 */
#include <stdlib.h>
#include <string.h>

#include "arena_helpers.h"

struct vec {
	const char *name;
	uint8_t data[48];
	size_t len;
	uint32_t crc;
};

static void vectors(void **state)
{
	static struct vec v[5] = {
		{ "123456789", "123456789", 9, 0xE3069283u },
		{ "32 x 00", { 0 }, 32, 0x8A9136AAu },
		{ "32 x ff", { 0 }, 32, 0x62A8AB43u },
		{ "00..1f", { 0 }, 32, 0x46DD794Eu },
		{ "1f..00", { 0 }, 32, 0x113FDB5Cu },
	};

	(void)state;
	memset(v[2].data, 0xff, 32);
	for (int i = 0; i < 32; i++) {
		v[3].data[i] = (uint8_t)i;
		v[4].data[i] = (uint8_t)(31 - i);
	}
	print_message("sse4.2 crc32 instruction: %s\n",
		      crc32c_hw_available() ? "yes" : "no (table only)");
	for (unsigned i = 0; i < 5; i++) {
		uint32_t sw = crc32c_sw(0, v[i].data, v[i].len);
		uint32_t hw = crc32c_hw(0, v[i].data, v[i].len);

		print_message("%-10s table %08x hw %08x want %08x\n", v[i].name,
			      sw, hw, v[i].crc);
		assert_int_equal(sw, v[i].crc);
		assert_int_equal(hw, v[i].crc);
		assert_int_equal(crc32c(0, v[i].data, v[i].len), v[i].crc);
	}
	assert_int_equal(crc32c_sw(0, NULL, 0), 0);
	assert_int_equal(crc32c_hw(0, NULL, 0), 0);
}

/* Every length and alignment, whole and in two pieces: one result. */
static void agree(void **state)
{
	uint8_t buf[256 + 8];

	(void)state;
	srand(7);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)rand();
	for (size_t off = 0; off < 8; off++) {
		for (size_t len = 0; len <= 256; len++) {
			uint32_t sw = crc32c_sw(0, buf + off, len);
			uint32_t hw = crc32c_hw(0, buf + off, len);
			size_t cut = len / 3;

			assert_int_equal(sw, hw);
			assert_int_equal(crc32c_sw(crc32c_sw(0, buf + off, cut),
						   buf + off + cut, len - cut),
					 sw);
			assert_int_equal(crc32c_hw(crc32c_hw(0, buf + off, cut),
						   buf + off + cut, len - cut),
					 sw);
		}
	}
}

/* A message's checksum covers len, attr_len, corr_id, reply_to, payload
 * and attributes, and nothing the bus changes in transit. */
static void message(void **state)
{
	static uint8_t mem[SHMBUS_CHUNK_HDR + 256] __attribute__((aligned(64)));
	struct shmbus_chunk *c = (struct shmbus_chunk *)mem;
	uint8_t *pl = mem + SHMBUS_CHUNK_HDR;
	uint32_t base;

	(void)state;
	memcpy(pl, "hello", 5);
	memcpy(pl + 8, "attrs", 5);
	c->len = 5;
	c->attr_len = 5;
	c->corr_id = 42;
	c->reply_to = 3;
	base = chunk_checksum(c, 5, 5);
	/* what the bus changes in transit: not covered */
	c->delivery_count = 9;
	c->owner = 123;
	c->dl_reason = 2;
	c->expires_ns = 77;
	c->id = 5;
	pl[5] = 0xaa;		/* padding between payload and attributes */
	assert_int_equal(chunk_checksum(c, 5, 5), base);
	/* every covered part: covered */
	pl[0] ^= 1;
	assert_int_not_equal(chunk_checksum(c, 5, 5), base);
	pl[0] ^= 1;
	pl[12] ^= 0x80;
	assert_int_not_equal(chunk_checksum(c, 5, 5), base);
	pl[12] ^= 0x80;
	c->corr_id = 43;
	assert_int_not_equal(chunk_checksum(c, 5, 5), base);
	c->corr_id = 42;
	c->reply_to = 4;
	assert_int_not_equal(chunk_checksum(c, 5, 5), base);
	c->reply_to = 3;
	assert_int_not_equal(chunk_checksum(c, 4, 5), base);
	assert_int_not_equal(chunk_checksum(c, 5, 4), base);
	assert_int_equal(chunk_checksum(c, 5, 5), base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(vectors),
		cmocka_unit_test(agree),
		cmocka_unit_test(message),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
