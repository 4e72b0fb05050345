// SPDX-License-Identifier: MIT
/*
 * transport.c - the transports under test behind struct transport (one
 * row of the report each; the operations live in transport_raw.c,
 * transport_shmbus.c and transport_fd.c), the fds that a transport's
 * prepare() makes in the parent before fork, and the operations that
 * some transports do not need.
 */
#include <unistd.h>

#include "bench.h"

/* fds made by prepare(); the parent closes them all after forking */
static int prep_fds[2 * NR_CHAN];
static int nr_prep_fds;

void prep_fd_add(int fd)
{
	prep_fds[nr_prep_fds++] = fd;
}

void prep_fds_close(void)
{
	for (int i = 0; i < nr_prep_fds; i++)
		close(prep_fds[i]);
	nr_prep_fds = 0;
}

/* Child: close the prepared fds that neither of our ends uses. */
void prep_fds_keep(const struct end *a, const struct end *b)
{
	for (int i = 0; i < nr_prep_fds; i++) {
		int fd = prep_fds[i];

		if ((a->buf && a->fd == fd) || (b->buf && b->fd == fd))
			continue;
		close(fd);
	}
}

int no_child_init(void)
{
	return 0;
}

void no_child_fini(void)
{
}

void no_close(struct end *e)
{
}

const struct transport transports[NR_TP] = {
	[TP_RAW] = {
		.name = "raw ring", .has_busy = true,
		.prepare = raw_prepare,
		.child_init = no_child_init, .child_fini = no_child_fini,
		.open = raw_open, .close = no_close,
		.send = raw_send, .recv = raw_recv,
	},
	[TP_SHMBUS] = {
		.name = "shmbus", .has_busy = true,
		.prepare = sb_prepare,
		.child_init = sb_child_init, .child_fini = sb_child_fini,
		.open = sb_open, .close = sb_close,
		.send = sb_send, .recv = sb_recv,
	},
	[TP_ACK] = {
		.name = "shmbus ack", .has_busy = true,
		.prepare = sb_prepare,
		.child_init = sb_child_init, .child_fini = sb_child_fini,
		.open = sb_open_ack, .close = sb_close,
		.send = sb_send, .recv = sb_recv,
	},
	[TP_LOAN] = {
		.name = "shmbus loan", .has_busy = true,
		.prepare = sb_prepare,
		.child_init = sb_child_init, .child_fini = sb_child_fini,
		.open = sb_open, .close = sb_close,
		.send = sb_loan_send, .recv = sb_recv,
	},
	[TP_SUM] = {
		.name = "shmbus crc", .has_busy = true,
		.prepare = sb_sum_prepare,
		.child_init = sb_child_init, .child_fini = sb_child_fini,
		.open = sb_open_sum, .close = sb_close,
		.send = sb_send, .recv = sb_recv,
	},
	[TP_PIPE] = {
		.name = "pipe", .has_busy = false,
		.prepare = pipe_prepare,
		.child_init = no_child_init, .child_fini = no_child_fini,
		.open = fd_open, .close = no_close,
		.send = fd_send, .recv = fd_recv,
	},
	[TP_UDS] = {
		.name = "socketpair", .has_busy = false,
		.prepare = uds_prepare,
		.child_init = no_child_init, .child_fini = no_child_fini,
		.open = fd_open, .close = no_close,
		.send = fd_send, .recv = fd_recv,
	},
#ifdef SHMBUS_BENCH_PEERS
	PEERS_TRANSPORTS
#endif
};
