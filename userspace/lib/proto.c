// SPDX-License-Identifier: MIT
/*
 * proto.c - validation helpers for the control protocol (proto.h), shared
 * by the library and the daemon so both sides accept the same names.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

int proto_pattern_valid(const char pattern[SHMBUS_NAME_MAX])
{
	char tmp[SHMBUS_NAME_MAX];
	size_t n = strnlen(pattern, SHMBUS_NAME_MAX), tok = 0;

	if (n == SHMBUS_NAME_MAX)
		return -EINVAL;
	/* check the wildcards here, the rest as a name with them replaced */
	memcpy(tmp, pattern, SHMBUS_NAME_MAX);
	for (size_t i = 0; i <= n; i++) {
		if (i < n && pattern[i] != '.')
			continue;
		/* token [tok, i) */
		if (i - tok == 1 && (pattern[tok] == '*' || pattern[tok] == '>')) {
			if (pattern[tok] == '>' && i != n)
				return -EINVAL;	/* '>' only at the end */
			tmp[tok] = 'x';
		}
		tok = i + 1;
	}
	return proto_name_valid(tmp);
}

bool proto_pattern_match(const char *pattern, const char *topic)
{
	const char *p = pattern, *t = topic;

	for (;;) {
		size_t pl = strcspn(p, "."), tl = strcspn(t, ".");

		if (pl == 1 && *p == '>')
			return tl > 0;		/* one or more tokens left */
		if (!(pl == 1 && *p == '*') && (pl != tl || memcmp(p, t, pl)))
			return false;
		p += pl;
		t += tl;
		if (!*p || !*t)
			return !*p && !*t;
		p++;
		t++;
	}
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

void proto_give_fds(struct msghdr *mh, union proto_cbuf *cbuf, const int *fds,
		    unsigned n)
{
	struct cmsghdr *cm;

	if (!n)
		return;
	memset(cbuf->b, 0, sizeof(cbuf->b));
	mh->msg_control = cbuf->b;
	mh->msg_controllen = CMSG_SPACE(sizeof(int) * n);
	cm = CMSG_FIRSTHDR(mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
}

unsigned proto_take_fds(struct msghdr *mh, int *fds, unsigned cap,
			unsigned *stored)
{
	unsigned total = 0, k = 0;

	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm;
	     cm = CMSG_NXTHDR(mh, cm)) {
		int n, *p;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		p = (int *)CMSG_DATA(cm);
		for (int i = 0; i < n; i++, total++) {
			if (fds && k < cap)
				fds[k++] = p[i];
			else
				close(p[i]);
		}
	}
	if (stored)
		*stored = k;
	return total;
}
