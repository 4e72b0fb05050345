// SPDX-License-Identifier: MIT
/*
 * fuzz_frames.c - libFuzzer target: the daemon's handling of control
 * frames, and its periodic work over an arena its members scribble on.
 *
 * Each input drives a fresh in-process daemon (a real struct daemon, its
 * buses real memfds) through up to four connections, each a
 * SOCK_SEQPACKET socketpair: the target writes a frame into the client
 * end and calls session_read() on the daemon's end, the event loop's own
 * handling of a received packet (recvmsg, frame check, dispatch, reply).
 * Replies are read back and checked for shape; the fds they carry are
 * closed. The input is a sequence of records, each starting with an op
 * byte: bits 0-1 pick the connection, bits 2-4 the action:
 *
 *   0  raw frame:    u16 length, then that many bytes (up to 2048: more
 *                    than SBC_FRAME_MAX arrives truncated, as on a socket)
 *   1  typed frame:  u8 type, u32 seq, then the type's body size of bytes
 *                    (zero-filled past the input's end); a correct header
 *   2  raw frame with a file descriptor attached (SCM_RIGHTS)
 *   3  close the connection (the daemon sees EOF: buses_conn_gone)
 *   4  periodic work: u8 seconds ahead; deliver_tick and defer_tick on
 *                    every bus at now + that many seconds
 *   5  scribble:     u8 bus, u32 offset, u8 length, then that many bytes
 *                    written into the bus's arena, as a member could
 *   6  typed frame with a file descriptor attached
 *   7  typed frame, then the periodic work at now
 *
 * Connections 0..3 carry the credentials of root, uid 1000 twice (two
 * connections of one user) and uid 65534. The daemon's memory budget is
 * FUZZ_BUS_MAX a bus and FUZZ_TOTAL_MAX in all (--bus-max, --memory-max),
 * so that the fuzzer's memory stays small. At the end every connection closes and the daemon frees
 * every bus: leak checking covers what a connection leaves behind.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shmbusd.h"

#define NCONN		4
#define FUZZ_BUS_MAX	(24ULL << 20)
#define FUZZ_TOTAL_MAX	(48ULL << 20)

struct fconn {
	int cfd, sfd;		/* client end, daemon end; -1: closed */
	struct session s;
};

static struct daemon dmn;
static struct fconn conns[NCONN];
static uint32_t next_conn_id = 1;
static uint64_t start_time;

struct input {
	const uint8_t *p;
	size_t n;
};

static bool get(struct input *in, void *out, size_t len)
{
	if (in->n < len)
		return false;
	memcpy(out, in->p, len);
	in->p += len;
	in->n -= len;
	return true;
}

/* up to @len bytes; the rest of @out zeroed */
static size_t get_some(struct input *in, void *out, size_t len)
{
	size_t k = len < in->n ? len : in->n;

	memcpy(out, in->p, k);
	memset((uint8_t *)out + k, 0, len - k);
	in->p += k;
	in->n -= k;
	return k;
}

static const struct {
	uid_t uid;
	gid_t gid;
} creds[NCONN] = { { 0, 0 }, { 1000, 1000 }, { 1000, 1000 },
		   { 65534, 65534 } };

static void conn_open(int i)
{
	struct fconn *c = &conns[i];
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	c->cfd = sv[0];
	c->sfd = sv[1];
	memset(&c->s, 0, sizeof(c->s));
	c->s.peer.conn_id = next_conn_id++;
	c->s.peer.pid = getpid();
	c->s.peer.uid = creds[i].uid;
	c->s.peer.gid = creds[i].gid;
	c->s.peer.start_time = start_time;
	if (i == 3) {		/* nobody, also in group 1000 */
		c->s.peer.ngroups = 1;
		c->s.peer.groups = c->s.peer.groups_inline;
		c->s.peer.groups[0] = 1000;
	}
}

/* As server.c's conn_close: the daemon forgets the connection. */
static void conn_gone(int i)
{
	struct fconn *c = &conns[i];

	if (c->sfd < 0)
		return;
	close(c->cfd);
	close(c->sfd);
	c->cfd = c->sfd = -1;
	buses_conn_gone(&dmn, c->s.peer.conn_id);
}

/* Read the daemon's replies on the client end: well formed, fds closed. */
static void drain_replies(struct fconn *c)
{
	for (;;) {
		union {
			struct sbc_hdr h;
			uint8_t b[SBC_FRAME_MAX + 1];
		} in;
		union {
			struct cmsghdr align;
			uint8_t b[CMSG_SPACE(sizeof(int) * SBC_MAX_FDS)];
		} cbuf;
		struct iovec iov = { .iov_base = in.b, .iov_len = sizeof(in.b) };
		struct msghdr mh = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = cbuf.b, .msg_controllen = sizeof(cbuf.b),
		};
		unsigned got;
		ssize_t n = recvmsg(c->cfd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n <= 0)
			return;
		got = proto_take_fds(&mh, NULL, 0, NULL);
		/* the daemon's side of the protocol: what a client relies on */
		if ((size_t)n < sizeof(in.h) || n > SBC_FRAME_MAX ||
		    (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
		    in.h.magic != SBC_MAGIC || in.h.len != (uint32_t)n ||
		    in.h.status > 0 || in.h.nfds != got ||
		    (in.h.status && got))
			abort();
	}
}

static void send_frame(int i, const void *f, size_t n, bool with_fd)
{
	struct fconn *c = &conns[i];
	union {
		struct cmsghdr align;
		uint8_t b[CMSG_SPACE(sizeof(int))];
	} cbuf;
	struct iovec iov = { .iov_base = (void *)f, .iov_len = n };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	int efd = -1;

	if (c->sfd < 0)
		conn_open(i);
	if (with_fd) {
		struct cmsghdr *cm;

		efd = eventfd(0, EFD_CLOEXEC);
		if (efd < 0)
			abort();
		memset(cbuf.b, 0, sizeof(cbuf.b));
		mh.msg_control = cbuf.b;
		mh.msg_controllen = sizeof(cbuf.b);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &efd, sizeof(int));
	}
	if (sendmsg(c->cfd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)n)
		abort();
	if (efd >= 0)
		close(efd);	/* in flight: the daemon's copy is its own */
	if (!session_read(&dmn, c->sfd, &c->s)) {
		drain_replies(c);
		conn_gone(i);
		return;
	}
	drain_replies(c);
}

static void tick_all(int64_t ahead)
{
	int64_t now = now_ns() + ahead;

	for (struct dbus *b = dmn.buses; b; b = b->next) {
		deliver_tick(b, now);
		defer_tick(b, 0);
	}
}

static void scribble(struct input *in)
{
	uint8_t bi, len, buf[255];
	uint32_t off;
	struct dbus *b = dmn.buses;

	if (!get(in, &bi, 1) || !get(in, &off, 4) || !get(in, &len, 1))
		return;
	len = (uint8_t)get_some(in, buf, len);
	for (; b && bi; bi--)
		b = b->next;
	if (!b || !len)
		return;
	off %= b->arena.size;
	if (len > b->arena.size - off)
		len = (uint8_t)(b->arena.size - off);
	memcpy(b->arena.base + off, buf, len);
}

static void typed_frame(int i, struct input *in, bool with_fd)
{
	union {
		struct sbc_hdr h;
		uint8_t b[SBC_FRAME_MAX];
	} f;
	uint8_t type;
	long body;

	if (!get(in, &type, 1))
		return;
	body = request_body_size(type);
	if (body < 0 || sizeof(f.h) + (size_t)body > sizeof(f))
		body = 0;
	memset(&f.h, 0, sizeof(f.h));
	f.h.magic = SBC_MAGIC;
	f.h.version = SBC_VERSION;
	f.h.type = type;
	f.h.len = (uint32_t)(sizeof(f.h) + body);
	get_some(in, &f.h.seq, sizeof(f.h.seq));
	get_some(in, f.b + sizeof(f.h), (size_t)body);
	send_frame(i, f.b, f.h.len, with_fd);
}

static void raw_frame(int i, struct input *in, bool with_fd)
{
	uint8_t f[2048];
	uint16_t len;

	if (!get(in, &len, 2))
		return;
	len %= sizeof(f) + 1;
	len = (uint16_t)get_some(in, f, len);
	send_frame(i, f, len, with_fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* every log line formatted, none kept */
	if (dlog_open("/dev/null"))
		abort();
	dlog_set_level(LOG_DEBUG_);
	shmbus_set_print(NULL);
	start_time = pid_start_time(getpid());
	/* per-uid quotas as a daemon with 1024 fds has them */
	quota_init(1024);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	uint8_t op;

	memset(&dmn, 0, sizeof(dmn));
	dmn.bus_max = FUZZ_BUS_MAX;
	dmn.memory_max = FUZZ_TOTAL_MAX;
	for (int i = 0; i < NCONN; i++)
		conns[i].cfd = conns[i].sfd = -1;
	while (get(&in, &op, 1)) {
		int i = op & 3;
		uint8_t secs;

		switch ((op >> 2) & 7) {
		case 0:
			raw_frame(i, &in, false);
			break;
		case 1:
			typed_frame(i, &in, false);
			break;
		case 2:
			raw_frame(i, &in, true);
			break;
		case 3:
			conn_gone(i);
			break;
		case 4:
			if (get(&in, &secs, 1))
				tick_all((int64_t)secs * NSEC_PER_SEC);
			break;
		case 5:
			scribble(&in);
			break;
		case 6:
			typed_frame(i, &in, true);
			break;
		case 7:
			typed_frame(i, &in, false);
			tick_all(0);
			break;
		}
	}
	for (int i = 0; i < NCONN; i++)
		conn_gone(i);
	tick_all(0);
	buses_free(&dmn);
	quota_free();	/* what the buses were charged: the next input starts clean */
	return 0;
}
