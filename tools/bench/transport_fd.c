// SPDX-License-Identifier: MIT
/*
 * transport_fd.c - the kernel's byte streams under test: a pipe per
 * channel, or one Unix stream socketpair for both channels. Messages are
 * copied into and out of a local buffer with write() and read(), which
 * block: these transports have no busy-poll mode.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

static int chan_fd[NR_CHAN][2];		/* [chan][tx] */

int pipe_prepare(const struct run *r, int nchan)
{
	for (int c = 0; c < nchan; c++) {
		int p[2];

		if (pipe2(p, O_CLOEXEC) < 0)
			return -errno;
		chan_fd[c][0] = p[0];
		chan_fd[c][1] = p[1];
		prep_fd_add(p[0]);
		prep_fd_add(p[1]);
	}
	return 0;
}

int uds_prepare(const struct run *r, int nchan)
{
	int sv[2];

	/* one bidirectional pair: chan c is sent on sv[c] */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	prep_fd_add(sv[0]);
	prep_fd_add(sv[1]);
	for (int c = 0; c < NR_CHAN; c++) {
		chan_fd[c][1] = sv[c];
		chan_fd[c][0] = sv[1 - c];
	}
	return 0;
}

int fd_open(struct end *e, int chan)
{
	e->fd = chan_fd[chan][e->tx];
	return 0;
}

int fd_send(struct end *e, uint64_t seq)
{
	fill(e->buf, e->size, seq);
	return write_full(e->fd, e->buf, e->size);
}

int fd_recv(struct end *e, uint64_t seq)
{
	int err = read_full(e->fd, e->buf, e->size);

	return err ? err : verify(e->buf, e->size, seq);
}
