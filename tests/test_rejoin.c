// SPDX-License-Identifier: MIT
/*
 * test_rejoin.c - the library's side of a daemon restart, against a
 * stand-in daemon (a thread of this test serving the control socket),
 * so that what the library sends is checked frame by frame:
 *  - after kill -9 of the daemon, the handle's watcher dials the next
 *    one, says HELLO, REJOIN with the arena it maps (the same memfd) and
 *    its bus, SEATS_GIVE with the seat eventfds of its queue, then the
 *    DETACH of a consumer freed while no daemon ran; a declare made
 *    while the daemon was gone waits for all that and then goes through;
 *    a consumer that saw the hang-up sleeps on the new socket again;
 *  - a control call finds no daemon for its whole timeout: -ENOTCONN
 *    with a reason, and closing the handle stops a watcher in its
 *    backoff at once;
 *  - a daemon that closes the connection and lives on is not rejoined;
 *  - BUS_OPEN answered -EINPROGRESS is asked again up to the timeout;
 *  - a forked child closes its copy of the handle without a watcher;
 *  - every fd the handle took is closed with it (after a rejoin too);
 *  - end to end, with the real daemon killed -9 and started again: the
 *    same handle declares again, its consumer asleep across the restart
 *    is woken by a process that opened the bus after it, and its own
 *    publish after the restart is received.
 */
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "shmbus.h"
#include "helpers.h"
#include "proto.h"

#define SEATS	4

/* ---- the stand-in daemon ----------------------------------------- */

struct standin {
	int delay_ms;		/* before it listens */
	bool close_after_declare;	/* hang up, and live on */
	ino_t arena_ino;
	struct shmbus_info bus;	/* what it answers REJOIN with */
	/* what it saw */
	int hellos, rejoins, rejoin_fds, rejoin_is_arena;
	char rejoin_name[SHMBUS_NAME_MAX];
	uint32_t rejoin_uid, rejoin_flags;
	int gives, give_fds, give_eventfds, give_map_ok;
	uint32_t give_qid;
	int detaches, declares, opens, others;
	int64_t rejoined_at;
	int stop;
	pthread_t thr;
};

/* The inode of the memfd this process maps as an arena. */
static ino_t arena_inode(void)
{
	char line[512], path[256];
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long ino = 0;

	while (f && fgets(line, sizeof(line), f)) {
		if (strstr(line, "/memfd:shmbus") &&
		    sscanf(line, "%*s %*s %*s %*s %lu %255s", &ino, path) == 2)
			break;
		ino = 0;
	}
	if (f)
		fclose(f);
	return (ino_t)ino;
}

static bool fd_links_to(int fd, const char *prefix)
{
	char p[64], l[256];
	ssize_t n;

	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	n = readlink(p, l, sizeof(l) - 1);
	if (n < 0)
		return false;
	l[n] = '\0';
	return !strncmp(l, prefix, strlen(prefix));
}

static void reply(int fd, const struct sbc_hdr *rq, const void *body,
		  size_t len)
{
	uint8_t b[SBC_FRAME_MAX];
	struct sbc_hdr h = {
		.magic = SBC_MAGIC, .version = SBC_VERSION, .type = rq->type,
		.len = sizeof(h) + len, .seq = rq->seq,
	};

	memcpy(b, &h, sizeof(h));
	if (len)
		memcpy(b + sizeof(h), body, len);
	if (send(fd, b, h.len, MSG_NOSIGNAL) != (ssize_t)h.len)
		perror("stand-in: send");
}

/* A refusal with a reason, as the daemon sends them. */
static void reply_err(int fd, const struct sbc_hdr *rq, int status,
		      const char *why)
{
	uint8_t b[SBC_FRAME_MAX];
	struct sbc_hdr h = {
		.magic = SBC_MAGIC, .version = SBC_VERSION, .type = rq->type,
		.len = sizeof(h) + strlen(why) + 1, .seq = rq->seq,
		.status = status,
	};

	memcpy(b, &h, sizeof(h));
	memcpy(b + sizeof(h), why, strlen(why) + 1);
	if (send(fd, b, h.len, MSG_NOSIGNAL) != (ssize_t)h.len)
		perror("stand-in: send");
}

static void on_rejoin(struct standin *s, const struct sbc_rejoin *rq,
		      const int *fds, unsigned nfds)
{
	struct stat st;

	s->rejoins++;
	s->rejoin_fds = nfds;
	memcpy(s->rejoin_name, rq->name, sizeof(s->rejoin_name));
	s->rejoin_uid = rq->owner_uid;
	s->rejoin_flags = rq->flags;
	s->rejoin_is_arena = nfds == 1 && !fstat(fds[0], &st) &&
			     st.st_ino == s->arena_ino &&
			     fd_links_to(fds[0], "/memfd:shmbus");
}

static void on_give(struct standin *s, const struct sbc_seats_give *rq,
		    const int *fds, unsigned nfds)
{
	unsigned bits = __builtin_popcountll(rq->seat_map[0]) +
			__builtin_popcountll(rq->seat_map[1]);

	s->gives++;
	s->give_qid = rq->qid;
	s->give_fds = nfds;
	s->give_map_ok = bits == nfds;
	for (unsigned i = 0; i < nfds; i++)
		s->give_eventfds += fd_links_to(fds[i], "anon_inode:[eventfd]");
}

/* Answer one frame on @fd. False when the peer is gone. */
static bool serve_one(struct standin *s, int fd)
{
	union {
		struct sbc_hdr h;
		uint8_t b[SBC_FRAME_MAX];
	} in;
	union proto_cbuf cbuf;
	struct iovec iov = { .iov_base = in.b, .iov_len = sizeof(in.b) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf.b,
			     .msg_controllen = sizeof(cbuf.b) };
	int fds[SBC_MAX_FDS];
	unsigned nfds = 0;
	void *body = in.b + sizeof(in.h);
	ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);

	if (n < (ssize_t)sizeof(in.h))
		return false;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm;
	     cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET &&
		    cm->cmsg_type == SCM_RIGHTS) {
			unsigned k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			memcpy(fds + nfds, CMSG_DATA(cm), k * sizeof(int));
			nfds += k;
		}
	switch (in.h.type) {
	case SBC_HELLO: {
		struct sbc_hello_reply r = {
			.version = SBC_VERSION,
			.layout_version = SHMBUS_LAYOUT_VERSION,
		};

		s->hellos++;
		reply(fd, &in.h, &r, sizeof(r));
		break;
	}
	case SBC_REJOIN: {
		/* the handle checks the record against its arena */
		struct sbc_bus_open_reply r = {
			.arena_size = s->bus.arena_size,
			.owner_uid = s->bus.owner_uid,
			.owner_gid = s->bus.owner_gid,
			.mode = s->bus.mode,
			.conn_token = 0x5eed,
		};

		on_rejoin(s, body, fds, nfds);
		reply(fd, &in.h, &r, sizeof(r));
		break;
	}
	case SBC_SEATS_GIVE:
		on_give(s, body, fds, nfds);
		reply(fd, &in.h, NULL, 0);
		break;
	case SBC_DETACH:
		s->detaches++;
		reply(fd, &in.h, NULL, 0);
		break;
	case SBC_QUEUE_DECLARE: {
		struct sbc_queue_declare_reply r = { .qid = 9, .gen = 3,
						     .created = 1 };

		s->declares++;
		reply(fd, &in.h, &r, sizeof(r));
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		return !s->close_after_declare;
	}
	case SBC_BUS_OPEN:
		/* a restarted daemon, the bus's members not back yet */
		s->opens++;
		reply_err(fd, &in.h, -EINPROGRESS, "bus held, not adopted");
		break;
	default:
		s->others++;
		reply(fd, &in.h, NULL, 0);
	}
	for (unsigned i = 0; i < nfds; i++)
		close(fds[i]);
	return true;
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, path);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(fd, 8)) {
		perror("stand-in: listen");
		exit(1);
	}
	return fd;
}

static void *standin_run(void *arg)
{
	struct standin *s = arg;
	int lfd, cfd = -1;

	usleep(s->delay_ms * 1000);
	lfd = listen_on(t_sock);
	while (!READ_ONCE(s->stop)) {
		struct pollfd p = { .fd = cfd >= 0 ? cfd : lfd,
				    .events = POLLIN };

		if (poll(&p, 1, 20) <= 0)
			continue;
		if (cfd < 0) {
			cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			continue;
		}
		if (!serve_one(s, cfd)) {
			close(cfd);
			cfd = -1;
		}
	}
	if (cfd >= 0)
		close(cfd);
	close(lfd);
	unlink(t_sock);
	return NULL;
}

static void standin_start(struct standin *s)
{
	assert_int_equal(pthread_create(&s->thr, NULL, standin_run, s), 0);
}

static void standin_stop(struct standin *s)
{
	WRITE_ONCE(s->stop, 1);
	pthread_join(s->thr, NULL);
}

/* ---- helpers ------------------------------------------------------ */

/* A handle that never starts a daemon, so that what answers after the
 * kill is the stand-in; the first open (autostart) made the daemon. */
static struct shmbus *open_nostart(const char *name, int timeout_ms)
{
	struct shmbus *b = shmbus__open(name, NULL);	/* starts the daemon */
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART,
		    .connect_timeout_ms = timeout_ms);

	assert_non_null(b);
	shmbus__close(b);
	b = shmbus__open(name, &o);
	assert_non_null(b);
	return b;
}

static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

static uint64_t sleeps(struct shmbus *b, const char *q)
{
	struct shmbus_queue_info qi;

	assert_int_equal(shmbus__queue_info(b, q, &qi), 0);
	return qi.stat[SHMBUS_STAT_SLEEPS];
}

struct receiver {
	struct shmbus_consumer *c;
	int64_t timeout_ns;
	int err;
};

static void *receive_run(void *arg)
{
	struct receiver *r = arg;
	char buf[16];

	r->err = (int)shmbus_consumer__receive(r->c, buf, sizeof(buf),
					       r->timeout_ns);
	return NULL;
}

/* ---- tests -------------------------------------------------------- */

static void test_rejoin_frames(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_consumers = SEATS);
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
	struct standin s = { .delay_ms = 300 };
	struct receiver r = { .timeout_ns = 400 * 1000000LL };
	struct shmbus_consumer *c1, *c2;
	struct shmbus_producer *p;
	struct shmbus *bus;
	pthread_t rt;
	uint64_t s0, s1;
	int64_t t0, waited;
	int err, fds0;

	(void)state;
	fds0 = fd_count();
	bus = open_nostart("sb", 3000);
	assert_int_equal(shmbus__queue_declare(bus, "q", &qo), 1);
	c1 = shmbus_consumer__new(bus, "q", &co);
	c2 = shmbus_consumer__new(bus, "q", &co);
	p = shmbus_producer__new(bus, "q", NULL);
	assert_non_null(c1);
	assert_non_null(c2);
	assert_non_null(p);
	s.arena_ino = arena_inode();
	assert_true(s.arena_ino != 0);
	assert_int_equal(shmbus__info(bus, &s.bus), 0);

	/* c1 asleep when the daemon dies: it sees the hang-up */
	r.c = c1;
	assert_int_equal(pthread_create(&rt, NULL, receive_run, &r), 0);
	usleep(100 * 1000);
	t_kill_daemon();
	standin_start(&s);
	/* freed with no daemon: its DETACH is owed to the next one */
	shmbus_consumer__free(c2);
	t0 = t_now_ns();
	err = shmbus__queue_declare(bus, "after", NULL);
	waited = t_now_ns() - t0;
	pthread_join(rt, NULL);
	printf("declare after the kill: %d after %.0f ms (%s); stand-in saw "
	       "hello %d rejoin %d (fds %d, the arena %d) seats_give %d "
	       "(fds %d, eventfds %d) detach %d declare %d other %d\n", err,
	       waited / 1e6, shmbus_errmsg(), s.hellos, s.rejoins,
	       s.rejoin_fds, s.rejoin_is_arena, s.gives, s.give_fds,
	       s.give_eventfds, s.detaches, s.declares, s.others);
	/* the stand-in's answer: it came over the new connection */
	assert_int_equal(err, 1);
	assert_true(waited >= 250 * 1000000LL);
	assert_int_equal(r.err, -ETIMEDOUT);
	assert_int_equal(s.hellos, 1);
	assert_int_equal(s.rejoins, 1);
	assert_int_equal(s.rejoin_fds, 1);
	assert_true(s.rejoin_is_arena);
	assert_string_equal(s.rejoin_name, "sb");
	assert_int_equal(s.rejoin_uid, geteuid());
	assert_int_equal(s.rejoin_flags, 0);
	assert_int_equal(s.gives, 1);
	{
		struct shmbus_queue_info qi;

		assert_int_equal(shmbus__queue_info(bus, "q", &qi), 0);
		assert_int_equal(s.give_qid, qi.id);
	}
	/* both seats' eventfds: c2's seat is still the queue's */
	assert_int_equal(s.give_fds, 2);
	assert_int_equal(s.give_eventfds, 2);
	assert_true(s.give_map_ok);
	assert_int_equal(s.detaches, 1);
	assert_int_equal(s.declares, 1);
	assert_int_equal(s.others, 0);

	/* c1 saw the old socket hang up; it sleeps on the new one now,
	 * once, instead of looking every 20 ms */
	s0 = sleeps(bus, "q");
	assert_null(receive_run(&r));
	s1 = sleeps(bus, "q");
	printf("sleeps of a 400 ms receive after the rejoin: %llu\n",
	       (unsigned long long)(s1 - s0));
	assert_int_equal(r.err, -ETIMEDOUT);
	assert_true(s1 - s0 <= 2);

	shmbus_producer__free(p);
	shmbus_consumer__free(c1);
	shmbus__close(bus);
	standin_stop(&s);
	/* the watcher, both sockets, the pidfds: all gone */
	assert_int_equal(fd_count(), fds0);
}

/* No daemon comes back: a call waits its timeout and says why; close
 * stops the watcher in its backoff at once. */
static void test_rejoin_timeout(void **state)
{
	struct shmbus *bus = open_nostart("tb", 300);
	int64_t t0, waited, closing;
	int err;

	(void)state;
	t_kill_daemon();
	unlink(t_sock);
	t0 = t_now_ns();
	err = shmbus__queue_declare(bus, "x", NULL);
	waited = t_now_ns() - t0;
	printf("declare with no daemon: %d after %.0f ms: %s\n", err,
	       waited / 1e6, shmbus_errmsg());
	assert_int_equal(err, -ENOTCONN);
	assert_true(waited >= 250 * 1000000LL && waited < 2000 * 1000000LL);
	assert_non_null(strstr(shmbus_errmsg(), "no new one took the bus"));
	t0 = t_now_ns();
	shmbus__close(bus);
	closing = t_now_ns() - t0;
	printf("close during the backoff: %.1f ms\n", closing / 1e6);
	assert_true(closing < 200 * 1000000LL);
}

/* A daemon that hangs up and lives on closed us on purpose: the handle
 * stays without a connection. The stand-in is this process: alive. */
static void test_no_rejoin_when_closed(void **state)
{
	struct standin s = { .close_after_declare = true };
	struct shmbus *bus = open_nostart("cb", 300);
	int64_t t0;
	int err;

	(void)state;
	s.arena_ino = arena_inode();
	assert_int_equal(shmbus__info(bus, &s.bus), 0);
	t_kill_daemon();
	standin_start(&s);
	assert_int_equal(shmbus__queue_declare(bus, "x", NULL), 1);
	assert_int_equal(s.rejoins, 1);
	/* the stand-in hung up after that answer; wait out the watcher's
	 * look at whether it exited (the handle's timeout) */
	usleep(600 * 1000);
	t0 = t_now_ns();
	err = shmbus__queue_declare(bus, "y", NULL);
	printf("declare after a hang-up by a live daemon: %d after %.1f ms: "
	       "%s\n", err, (t_now_ns() - t0) / 1e6, shmbus_errmsg());
	assert_int_equal(err, -ENOTCONN);
	assert_true(t_now_ns() - t0 < 100 * 1000000LL);
	assert_non_null(strstr(shmbus_errmsg(), "closed this bus handle"));
	assert_int_equal(s.rejoins, 1);
	shmbus__close(bus);
	standin_stop(&s);
}

/* BUS_OPEN of a bus whose members have not rejoined a restarted daemon:
 * asked again until the connect timeout, then EINPROGRESS and why. */
static void test_open_in_progress(void **state)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART,
		    .connect_timeout_ms = 400);
	struct standin s = { 0 };
	struct shmbus *bus;
	int64_t t0, took;

	(void)state;
	t_kill_daemon();
	unlink(t_sock);
	standin_start(&s);
	for (int i = 0; i < 1000 && access(t_sock, F_OK); i++)
		usleep(1000);
	t0 = t_now_ns();
	bus = shmbus__open("held", &o);
	took = t_now_ns() - t0;
	printf("open of a held bus: errno %d after %.0f ms, %d BUS_OPENs: %s\n",
	       errno, took / 1e6, s.opens, shmbus_errmsg());
	assert_null(bus);
	assert_int_equal(errno, EINPROGRESS);
	assert_true(s.opens >= 3);
	assert_true(took >= 300 * 1000000LL && took < 1000 * 1000000LL);
	assert_non_null(strstr(shmbus_errmsg(), "have not rejoined"));
	standin_stop(&s);
}

/* ---- end to end: the real daemon, killed and started again ------ */

static pid_t e2e_daemon;	/* killed by the teardown if a check fails */

static int e2e_teardown(void **state)
{
	(void)state;
	if (e2e_daemon > 0) {
		kill(e2e_daemon, SIGKILL);
		waitpid(e2e_daemon, NULL, 0);
	}
	e2e_daemon = 0;
	return 0;
}

/* shmbusd on t_sock, our child, in the foreground; running once its
 * socket is there. */
static pid_t daemon_run(void)
{
	pid_t pid;

	unlink(t_sock);
	pid = fork();
	if (!pid) {
		char log[PATH_MAX];

		snprintf(log, sizeof(log), "%s/e2e.log", t_dir);
		execl(getenv("SHMBUS_DAEMON"), "shmbusd", "--socket", t_sock,
		      "--log", log, (char *)NULL);
		_exit(127);
	}
	assert_true(pid > 0);
	e2e_daemon = pid;
	/* listening, not only bound: the path exists a moment before
	 * listen(), and a NOSTART open meanwhile is refused */
	for (int i = 0; i < 5000 && !t_listening(t_sock); i++)
		usleep(1000);
	assert_true(t_listening(t_sock));
	return pid;
}

/* A process that opens the bus after the restart and publishes @v to
 * q once told to (@go): its producer can wake our sleeping consumer only
 * with the seat eventfd the new daemon got from our SEATS_GIVE. Forked
 * before our receiving thread starts (no fork() of a threaded test). */
static pid_t late_publisher(int v, int go)
{
	pid_t kid = fork();

	if (!kid) {
		SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART);
		struct shmbus *b = shmbus__open("e2e", &o);
		struct shmbus_producer *p;
		char c;

		CHILD_CHECK(b, "open after the restart: %s (%s)",
			    strerror(errno), shmbus_errmsg());
		p = shmbus_producer__new(b, "q", NULL);
		CHILD_CHECK(p, "producer: %s", strerror(errno));
		CHILD_CHECK(read(go, &c, 1) == 1, "go");
		CHILD_CHECK(!shmbus_producer__publish(p, &v, sizeof(v), NULL),
			    "publish");
		shmbus_producer__free(p);
		shmbus__close(b);
		_exit(0);
	}
	return kid;
}

static void test_restart_end_to_end(void **state)
{
	SHMBUS_OPTS(shmbus_open_opts, o, .flags = SHMBUS_OPEN_NOSTART);
	SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
	struct receiver r = { .timeout_ns = 5LL * 1000000000 };
	int sent = 0, got = 0, dup = 0, v = 0;
	struct shmbus_consumer *c;
	struct shmbus_producer *p;
	struct shmbus_msg m;
	struct shmbus *bus;
	int64_t t0, woke;
	pid_t d, kid;
	pthread_t rt;
	char buf[16];
	int go[2];

	(void)state;
	t_kill_daemon();		/* the earlier tests' */
	d = daemon_run();
	bus = shmbus__open("e2e", &o);
	if (!bus)
		fail_msg("open: %s (%s)", strerror(errno), shmbus_errmsg());
	assert_int_equal(shmbus__queue_declare(bus, "q", NULL), 1);
	c = shmbus_consumer__new(bus, "q", &co);
	p = shmbus_producer__new(bus, "q", NULL);
	assert_non_null(c);
	assert_non_null(p);
	t_publish_int(p, sent++, NULL);
	assert_int_equal(t_recv_int(c, &m, 1000000000), 0);
	shmbus_consumer__release(c, &m);
	got++;

	kill(d, SIGKILL);
	assert_int_equal(t_wait(d, 5000), 128 + SIGKILL);
	/* no daemon: the data path goes on */
	t_publish_int(p, sent++, NULL);
	assert_int_equal(t_recv_int(c, &m, 1000000000), 1);
	shmbus_consumer__release(c, &m);
	got++;

	d = daemon_run();
	/* the same handle: the declare waits for the rejoin, then works */
	t0 = t_now_ns();
	assert_int_equal(shmbus__queue_declare(bus, "q2", NULL), 1);
	printf("declare on the same handle after the restart: %.1f ms\n",
	       (t_now_ns() - t0) / 1e6);
	assert_int_equal(shmbus__queue_declare(bus, "q", NULL), 0);

	/* asleep on the new socket; woken by a process that attached
	 * after the restart */
	assert_int_equal(pipe(go), 0);
	kid = late_publisher(sent++, go[0]);
	r.c = c;
	assert_int_equal(pthread_create(&rt, NULL, receive_run, &r), 0);
	usleep(200 * 1000);
	t0 = t_now_ns();
	assert_int_equal(write(go[1], "g", 1), 1);
	pthread_join(rt, NULL);
	woke = t_now_ns() - t0;
	assert_int_equal(t_wait(kid, 5000), 0);
	assert_int_equal(r.err, sizeof(int));
	got++;
	/* and ours, after the restart */
	t_publish_int(p, sent++, NULL);
	assert_int_equal(shmbus_consumer__receive(c, buf, sizeof(buf),
						  1000000000), sizeof(int));
	memcpy(&v, buf, sizeof(v));
	got++;
	dup += v != sent - 1;
	printf("restart end to end: sent %d received %d lost %d duplicated "
	       "%d; a late process's publish woke us in %.1f ms\n", sent, got,
	       sent - got, dup, woke / 1e6);
	assert_int_equal(got, sent);
	assert_int_equal(dup, 0);
	assert_true(woke < 1000000000LL);
	assert_int_equal(shmbus_consumer__receive_view(c, &m, 0), -EAGAIN);

	shmbus_producer__free(p);
	shmbus_consumer__free(c);
	shmbus__close(bus);
	close(go[0]);
	close(go[1]);
	kill(d, SIGTERM);
	assert_int_equal(t_wait(d, 5000), 0);
	e2e_daemon = 0;
}

/* A forked child's copy of the handle has no watcher: closing it must
 * neither wait for one nor touch the parent's. */
static void test_fork_close(void **state)
{
	struct shmbus *bus = shmbus__open("fb", NULL);
	pid_t kid;

	(void)state;
	assert_non_null(bus);
	kid = fork();
	if (!kid) {
		CHILD_CHECK(shmbus__queue_declare(bus, "k", NULL) == -ECHILD,
			    "a child's declare");
		shmbus__close(bus);
		_exit(0);
	}
	assert_int_equal(t_wait(kid, 5000), 0);
	assert_int_equal(shmbus__queue_declare(bus, "k", NULL), 1);
	shmbus__close(bus);
}

/*
 * The data path refuses a forked child too: publish, loan, receive, ack,
 * nack, extend, arm, flush and request on the parent's handles fail
 * -ECHILD and change nothing the parent holds (a wake-up it owes, its
 * lease), already in an application's atfork handler; freeing them frees
 * the child's copies; the child's own bus works. A child made by
 * _Fork(), which runs no atfork handlers, is refused from its first
 * control call on.
 */
/* An application's atfork child handler, registered after the library
 * was loaded, that tries the parent's consumer: it must already be
 * refused there. */
static struct shmbus_consumer *atfork_c;
static int atfork_got;

static void atfork_child(void)
{
	struct shmbus_msg m;

	if (atfork_c)
		atfork_got = shmbus_consumer__receive_view(atfork_c, &m, 0);
}

static void test_fork_data_path(void **state)
{
	SHMBUS_OPTS(shmbus_consumer_opts, co, .lease_ns = 60000000000LL);
	struct shmbus *bus = shmbus__open("fd", NULL);
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_msg held, m;
	unsigned got = 0, dup = 0;
	bool seen[5] = { 0 };
	pid_t kid;

	(void)state;
	assert_non_null(bus);
	assert_int_equal(shmbus__queue_declare(bus, "d", NULL), 1);
	p = shmbus_producer__new(bus, "d", NULL);
	c = shmbus_consumer__new(bus, "d", &co);
	assert_non_null(p);
	assert_non_null(c);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(shmbus_producer__publish(p, &i, sizeof(i),
							  NULL), 0);
	assert_int_equal(shmbus_consumer__receive_view(c, &held, 1000000000LL),
			 0);
	/* a wake-up owed: the child's flush and free must not pay it from
	 * the parent's slot */
	{
		SHMBUS_OPTS(shmbus_pub_opts, more, .flags = SHMBUS_PUB_MORE);
		unsigned v = 4;

		assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v),
							  &more), 0);
	}
	atfork_c = c;
	atfork_got = 1;
	assert_int_equal(pthread_atfork(NULL, NULL, atfork_child), 0);
	kid = fork();
	if (!kid) {
		struct shmbus *own;
		struct shmbus_producer *op;
		unsigned v = 99;
		char rep[8];

		CHILD_CHECK(shmbus_producer__publish(p, &v, sizeof(v), NULL) ==
			    -ECHILD, "publish");
		errno = 0;
		CHILD_CHECK(!shmbus_producer__loan(p, 8, 0) && errno == ECHILD,
			    "loan");
		CHILD_CHECK(shmbus_consumer__receive_view(c, &m, 0) == -ECHILD,
			    "receive");
		CHILD_CHECK(shmbus_consumer__ack(c, &held) == -ECHILD, "ack");
		CHILD_CHECK(shmbus_consumer__nack(c, &held, 0) == -ECHILD,
			    "nack");
		CHILD_CHECK(shmbus_consumer__extend(c, &held, 0) == -ECHILD,
			    "extend");
		CHILD_CHECK(shmbus_consumer__arm(c) == -ECHILD, "arm");
		CHILD_CHECK(shmbus__request(bus, "d", &v, sizeof(v), rep,
					    sizeof(rep), 0) == -ECHILD,
			    "request");
		CHILD_CHECK(atfork_got == -ECHILD, "receive in an atfork "
			    "handler: %d", atfork_got);
		CHILD_CHECK(shmbus_producer__flush(p) == -ECHILD, "flush");
		shmbus_consumer__release(c, &held);	/* a no-op here */
		shmbus_producer__free(p);	/* the child's copy only */
		shmbus_consumer__free(c);
		/* the child's own handles work */
		own = shmbus__open("fd", NULL);
		CHILD_CHECK(own, "open");
		op = shmbus_producer__new(own, "d", NULL);
		CHILD_CHECK(op, "producer");
		v = 3;
		CHILD_CHECK(shmbus_producer__publish(op, &v, sizeof(v), NULL) ==
			    0, "own publish");
		shmbus_producer__free(op);
		shmbus__close(own);
		_exit(0);
	}
	assert_int_equal(t_wait(kid, 10000), 0);
	atfork_c = NULL;
	assert_int_equal(shmbus_producer__flush(p), 0);
	/* a child made without atfork handlers: refused from its first
	 * control call on */
	kid = _Fork();
	assert_true(kid >= 0);
	if (!kid) {
		unsigned v = 98;

		CHILD_CHECK(shmbus__queue_declare(bus, "d2", NULL) == -ECHILD,
			    "_Fork child's declare");
		CHILD_CHECK(shmbus_producer__publish(p, &v, sizeof(v), NULL) ==
			    -ECHILD, "_Fork child's publish");
		CHILD_CHECK(shmbus_consumer__receive_view(c, &m, 0) == -ECHILD,
			    "_Fork child's receive");
		_exit(0);
	}
	assert_int_equal(t_wait(kid, 10000), 0);
	/* the parent's lease is intact: ack it, then take the rest */
	seen[*(const unsigned *)held.data % 5] = true;
	assert_int_equal(shmbus_consumer__ack(c, &held), 0);
	got = 1;
	while (shmbus_consumer__receive_view(c, &m, 200000000LL) == 0) {
		unsigned v = *(const unsigned *)m.data;

		assert_true(v < 5);
		dup += seen[v];
		seen[v] = true;
		got++;
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	}
	printf("sent 5 received %u lost %u duplicated %u\n", got,
	       5 - (got - dup), dup);
	assert_int_equal(got, 5);
	assert_int_equal(dup, 0);
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	shmbus__close(bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rejoin_frames),
		cmocka_unit_test(test_rejoin_timeout),
		cmocka_unit_test(test_no_rejoin_when_closed),
		cmocka_unit_test(test_open_in_progress),
		cmocka_unit_test(test_fork_close),
		cmocka_unit_test(test_fork_data_path),
		cmocka_unit_test_teardown(test_restart_end_to_end,
					  e2e_teardown),
	};

	return T_RUN_WITH_DAEMON("rejoin", tests);
}
