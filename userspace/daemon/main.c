// SPDX-License-Identifier: MIT
/*
 * main.c - shmbusd: options, the socket and its lock, daemonizing.
 *
 * Only one daemon serves a socket path: it holds an flock on
 * "<socket>.lock" for its whole life. A second one (two clients starting
 * the daemon at once) sees the lock taken and exits; with --daemonize that
 * is success, since a daemon is running.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "client.h"
#include "shmbusd.h"

/* mkdir -p for the socket's directory; a private directory must be ours */
static int prepare_dir(const char *sock)
{
	char buf[108], *dir;
	struct stat st;

	snprintf(buf, sizeof(buf), "%s", sock);
	dir = dirname(buf);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(dir, geteuid() == 0 ? 0755 : 0700) < 0 && errno != EEXIST)
		return -errno;
	if (stat(dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	/* refuse a directory someone else can swap our socket in */
	if ((st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
		fprintf(stderr, "shmbusd: %s is world-writable\n", dir);
		return -EPERM;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		fprintf(stderr, "shmbusd: %s belongs to uid %u, not us\n", dir,
			st.st_uid);
		return -EPERM;
	}
	return 0;
}

/* Returns the lock fd, -EWOULDBLOCK if another daemon holds it. */
static int take_lock(const char *sock)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s.lock", sock);
	/* never through a link another user put in a sticky directory:
	 * the pid written below would truncate the file it names */
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int err = -errno;

		close(fd);
		return err == -EAGAIN ? -EWOULDBLOCK : err;
	}
	return fd;
}

static void write_pid(int fd)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());

	if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, n, 0) != n)
		log_warn("cannot record pid in lock file");
}

static int listen_on(const char *sock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(sock) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, sock);
	/* we hold the lock: whatever is at the path is a dead daemon's */
	unlink(sock);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    /* root serves every user; credentials are checked per request */
	    chmod(sock, geteuid() == 0 ? 0666 : 0600) < 0 ||
	    listen(fd, SOMAXCONN) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/* The soft fd limit up to the hard one (seats, connections and buses
 * each hold fds); returns the limit we run with. */
static uint64_t raise_nofile(void)
{
	struct rlimit rl;
	rlim_t was;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return 1024;
	}
	was = rl.rlim_cur;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			log_warn("RLIMIT_NOFILE: cannot raise %llu to %llu: %s",
				 (unsigned long long)was,
				 (unsigned long long)rl.rlim_max,
				 strerror(errno));
			rl.rlim_cur = was;
		}
	}
	log_info("RLIMIT_NOFILE: %llu (was %llu, hard limit %llu)",
		 (unsigned long long)rl.rlim_cur, (unsigned long long)was,
		 (unsigned long long)rl.rlim_max);
	/* an unlimited budget: count a generous one for the shares */
	return rl.rlim_cur == RLIM_INFINITY ? 1ULL << 20 : rl.rlim_cur;
}

/*
 * The socket's directory, its lock (*lockfd), the log, the listening
 * socket (*lfd): @activated if the service manager passed one, else our
 * own. Returns -1 to go on, else the exit code.
 */
static int setup(const struct options *o, int activated, int *lockfd,
		 int *lfd)
{
	int err;

	err = prepare_dir(o->sock);
	if (err) {
		fprintf(stderr, "shmbusd: cannot prepare the directory of %s: %s\n",
			o->sock, strerror(-err));
		return 1;
	}
	*lockfd = take_lock(o->sock);
	if (*lockfd == -EWOULDBLOCK) {
		if (o->daemonize)
			return 0;	/* another one won the start race */
		fprintf(stderr, "shmbusd: another daemon already serves %s\n",
			o->sock);
		return 1;
	}
	if (*lockfd < 0) {
		fprintf(stderr, "shmbusd: lock %s.lock: %s\n", o->sock,
			strerror(-*lockfd));
		return 1;
	}
	if (o->logpath && (err = dlog_open(o->logpath))) {
		fprintf(stderr, "shmbusd: log %s: %s\n", o->logpath,
			strerror(-err));
		return 1;
	}
	if (activated >= 0) {
		/* the service manager's socket: the loop wants it non-blocking */
		fcntl(activated, F_SETFL, fcntl(activated, F_GETFL) | O_NONBLOCK);
		*lfd = activated;
		return -1;
	}
	*lfd = listen_on(o->sock);
	if (*lfd < 0) {
		log_err("cannot listen on %s: %s", o->sock, strerror(-*lfd));
		return 1;
	}
	return -1;
}

/*
 * The name this daemon gives its arenas (arena_memfd_name()): a hash of
 * its socket's absolute path. Only one daemon serves a path at a time
 * (the lock), so an arena of this instance that a process still maps is
 * one a dead predecessor made, never a running daemon's.
 */
static uint32_t instance_of(const char *sock)
{
	char dir[PATH_MAX], path[PATH_MAX * 2];
	const char *slash = strrchr(sock, '/'), *base = slash ? slash + 1 : sock;
	uint32_t h = 2166136261u;	/* FNV-1a */

	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - sock) : 1,
		 slash ? (slash == sock ? "/" : sock) : ".");
	if (!realpath(dir, path))
		snprintf(path, sizeof(path), "%s", dir);
	strncat(path, "/", sizeof(path) - strlen(path) - 1);
	strncat(path, base, sizeof(path) - strlen(path) - 1);
	for (const char *p = path; *p; p++) {
		h ^= (uint8_t)*p;
		h *= 16777619u;
	}
	return h;
}

/*
 * The state directory (durable queues' journals): --state-dir, else the
 * user's default for the default socket, and a directory of this
 * instance in it for any other socket (tests, a second daemon). An
 * absolute path: the daemon may chdir("/"). NULL when there is none.
 */
static const char *state_dir_of(struct options *o, uint32_t instance)
{
	char def[108], base[PATH_MAX - 32], a[PATH_MAX], b[PATH_MAX];
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");

	if (o->state_dir)
		return o->state_dir;	/* absolute: options_parse() */
	if (geteuid() == 0)
		snprintf(base, sizeof(base), "/var/lib/shmbus");
	else if (xdg && xdg[0] == '/')
		snprintf(base, sizeof(base), "%s/shmbus", xdg);
	else if (home && home[0] == '/')
		snprintf(base, sizeof(base), "%s/.local/state/shmbus", home);
	else
		return NULL;
	/* the default socket of this uid, not $SHMBUS_SOCKET: a daemon
	 * started elsewhere with it set must not take the uid's default
	 * state directory from the one on the default socket */
	if (!shmbus_default_socket_path(def, sizeof(def)) &&
	    (!strcmp(def, o->sock) ||
	     (realpath(def, a) && realpath(o->sock, b) && !strcmp(a, b))))
		snprintf(o->statebuf, sizeof(o->statebuf), "%s", base);
	else
		snprintf(o->statebuf, sizeof(o->statebuf), "%s/instance-%08x",
			 base, instance);
	return o->statebuf;
}

/* Into the background, already listening: the spawning client waits for
 * this process; the daemon is the child, reparented to init. */
static int daemonize(void)
{
	pid_t pid = fork();

	if (pid < 0) {
		log_err("fork: %s", strerror(errno));
		return -1;
	}
	if (pid > 0)
		_exit(0);
	setsid();
	if (chdir("/") < 0)
		log_warn("chdir /: %s", strerror(errno));
	return 0;
}

/*
 * A daemon started with fd 0, 1 or 2 closed would give that number to the
 * first file it opens (its lock, the socket, an arena), and a log line
 * would then be written into it. /dev/null takes each closed one first.
 */
static void std_fds_open(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		if (open("/dev/null", O_RDWR) != fd)
			_exit(127);	/* nowhere to say so */
	}
}

int main(int argc, char **argv)
{
	struct daemon d = { 0 };
	struct options o = { 0 };
	char errbuf[320];
	int lockfd = -1, lfd = -1, activated, rc;

	std_fds_open();		/* before anything is opened */
	activated = fdstore_take();
	rc = options_parse(argc, argv, &o, &d);
	if (rc >= 0)
		return rc;
	signal(SIGPIPE, SIG_IGN);
	/* a policy that cannot be read is an error now, not a default */
	if (d.policy_path && policy_load(d.policy_path, d.policy_must, &d.policy,
					 errbuf, sizeof(errbuf))) {
		fprintf(stderr, "shmbusd: policy %s\n", errbuf);
		return 1;
	}
	rc = setup(&o, activated, &lockfd, &lfd);
	if (rc >= 0) {
		policy_free(d.policy);	/* not serving: refused or lost a race */
		return rc;
	}
	if (o.daemonize && daemonize() < 0)
		return 1;
	d.instance = instance_of(o.sock);
	/* its eventfd before the lock names us: whoever waits for a daemon
	 * to be up finds every fd it starts with */
	if (durable_setup(state_dir_of(&o, d.instance), o.segment_bytes) < 0) {
		log_err("durable queues: cannot set up (an eventfd, the state "
			"directory's path)");
		return 1;
	}
	write_pid(lockfd);
	quota_init(raise_nofile());
	if (kmod_init() < 0)
		return 1;
	/* the buses of the daemon before us, before any client is heard;
	 * with --daemonize we were autostarted by a client, whose own
	 * service manager must not hear from us */
	fdstore_start(&d, !o.daemonize);
	if (activated >= 0)
		log_info("listening on the socket the service manager passed "
			 "(fd %d; instance %08x)", activated, d.instance);
	else
		log_info("listening on %s (instance %08x)", o.sock,
			 d.instance);
	if (o.config_path)
		log_info("configuration %s", o.config_path);
	memory_describe(&d);
	bus_defaults_describe(&d);
	/* every bus a live process still maps is adopted before the first
	 * client is answered: none gets a second bus of a name in use */
	adopt_scan(&d);
	snprintf(o.regbuf, sizeof(o.regbuf), "%s.buses", o.sock);
	adopt_registry_load(&d, o.regbuf);
	adopt_registry_save(&d);
	/* buses nobody holds any more come back from their journals */
	durable_recover(&d);
	if (d.policy_path)
		log_info("policy %s: %u rules", d.policy_path,
			 policy_rules(d.policy));
	fdstore_ready(&d);
	rc = server_run(&d, lfd);
	fdstore_stopping();
	close(lfd);
	if (activated < 0)
		unlink(o.sock);	/* a passed socket's path is its manager's */
	buses_free(&d);
	durable_fini();
	fdstore_close();
	adopt_fini();
	quota_free();
	policy_free(d.policy);
	log_info("stopped");
	close(lockfd);
	return rc ? 1 : 0;
}
