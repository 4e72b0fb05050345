// SPDX-License-Identifier: MIT
/*
 * proto.c - validation helpers for the control protocol (proto.h), shared
 * by the library and the daemon so both sides accept the same names.
 */
#include <errno.h>
#include <string.h>

#include "proto.h"

static int name_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

int proto_name_valid(const char name[SHMBUS_NAME_MAX])
{
	size_t n = 0;

	while (n < SHMBUS_NAME_MAX && name[n])
		n++;
	if (n == 0 || n == SHMBUS_NAME_MAX || name[0] == '.')
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!name_char_ok(name[i]))
			return -EINVAL;
	return proto_all_zero(name + n, SHMBUS_NAME_MAX - n) ? 0 : -EINVAL;
}

int proto_name_set(char dst[SHMBUS_NAME_MAX], const char *src)
{
	size_t n;

	if (!src)
		return -EINVAL;
	n = strnlen(src, SHMBUS_NAME_MAX);
	if (n == SHMBUS_NAME_MAX)
		return -EINVAL;
	memset(dst, 0, SHMBUS_NAME_MAX);
	memcpy(dst, src, n);
	return proto_name_valid(dst);
}

int proto_all_zero(const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}
