// SPDX-License-Identifier: MIT
/*
 * iox.c - iceoryx under test, through its C binding, with a private
 * iox-roudi that this program starts (its memory pools sized for these
 * messages, in a config of the run's directory) and stops at exit.
 * Zero-copy: the sender loans a chunk, writes the message in place and
 * publishes it; the receiver takes the chunk, verifies it in place and
 * releases it - "shmbus loan" is the shmbus row that does the same.
 *
 * Nothing may be lost: the subscriber's queue blocks its publisher when
 * full (QueueFullPolicy_BLOCK_PRODUCER with
 * ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER), and the sender's first
 * message waits until the publisher has its subscriber (RouDi connects
 * them asynchronously). Busy mode polls take_chunk; block mode waits on
 * a WaitSet for the subscriber's DATA_RECEIVED event when nothing is
 * there. A publisher that waits for room polls in both modes (iceoryx
 * has no other way).
 *
 * iox-roudi is the one RouDi of the machine (its shared memory has fixed
 * names): the run fails if another one is running.
 */
#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iceoryx_binding_c/chunk.h"
#include "iceoryx_binding_c/log.h"
#include "iceoryx_binding_c/publisher.h"
#include "iceoryx_binding_c/runtime.h"
#include "iceoryx_binding_c/subscriber.h"
#include "iceoryx_binding_c/wait_set.h"

#include "bench.h"
#include "barrier.h"

#define IX_WAIT_S	10	/* for RouDi, for a subscriber */
#define IX_STOP_S	5	/* for RouDi's exit, beyond its -k 2 */
#define IX_QUEUE	256	/* the subscriber queue's most */
#define IX_NAME_PREFIX	"shmbus-bench-peers-"	/* + pid: a runtime's name */

static pid_t roudi_pid;
static char roudi_log[PATH_MAX];
static unsigned nr_runs;		/* a service of its own per run */

struct ix_end {
	iox_pub_storage_t pub_mem;
	iox_sub_storage_t sub_mem;
	iox_ws_storage_t ws_mem;
	iox_pub_t pub;
	iox_sub_t sub;
	iox_ws_t ws;			/* block mode's receiver */
	bool seen;			/* the publisher has its subscriber */
};

pid_t ix_pid(void)
{
	return roudi_pid;
}

static bool roudi_ready(void)
{
	char line[256];
	FILE *f = fopen(roudi_log, "r");
	bool ok = false;

	if (!f)
		return false;
	while (!ok && fgets(line, sizeof(line), f))
		ok = strstr(line, "RouDi is ready for clients");
	fclose(f);
	return ok;
}

/* Pools for chunks of 64 B and of 4 KiB, with their headers: enough for
 * a full subscriber queue, the chunks each side holds and RouDi's own,
 * of every channel. */
static int write_config(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return -errno;
	fprintf(f, "[general]\nversion = 1\n\n[[segment]]\n\n"
		"[[segment.mempool]]\nsize = 128\ncount = 2048\n\n"
		"[[segment.mempool]]\nsize = %u\ncount = 2048\n",
		MAX_MSG + 1024);
	return fclose(f) ? -errno : 0;
}

int ix_start(void)
{
	char conf[PATH_MAX];
	/* -k: a process still registered at our exit is one we killed;
	 * RouDi's 45 s of patience for it would only delay the exit */
	const char *argv[] = {
		"iox-roudi", "-c", conf, "-l", "info", "-k", "2", NULL,
	};
	int err;

	snprintf(conf, sizeof(conf), "%s/roudi.toml", peers_dir);
	snprintf(roudi_log, sizeof(roudi_log), "%s/roudi.log", peers_dir);
	err = write_config(conf);
	if (err)
		return err;
	roudi_pid = peers_spawn("iox-roudi", argv, roudi_log);
	if (roudi_pid < 0)
		return (int)roudi_pid;
	return peers_wait_ready(roudi_pid, "iox-roudi", roudi_ready,
				IX_WAIT_S, roudi_log);
}

/* The socket and lock file /tmp/NAME of each of our children's runtimes
 * that did not leave by exit() (killed, or failed): the name carries the
 * pid, and a process that is gone no longer needs them. */
static void runtime_leftovers(void)
{
	glob_t g;

	if (glob("/tmp/" IX_NAME_PREFIX "*", 0, NULL, &g))
		return;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		const char *p = g.gl_pathv[i] + sizeof("/tmp/" IX_NAME_PREFIX) - 1;
		long pid = strtol(p, NULL, 10);

		if (pid > 0 && bench_pid_gone((pid_t)pid))
			unlink(g.gl_pathv[i]);
	}
	globfree(&g);
}

/* What a RouDi that did not shut down cleanly leaves: its shared memory
 * (the management segment, and the payload segment named after the
 * user) and its sockets and locks in /tmp. Ours, since ours started: it
 * holds the machine's one RouDi lock while it runs. */
static void roudi_leftovers(void)
{
	static const char *const tmp_files[] = {
		"/tmp/roudi", "/tmp/roudi.lock", "/tmp/iox-unique-roudi.lock",
	};
	struct passwd *pw = getpwuid(geteuid());
	char seg[300];

	shm_unlink("/iceoryx_mgmt");
	if (pw) {
		snprintf(seg, sizeof(seg), "/%s", pw->pw_name);
		shm_unlink(seg);
	}
	for (size_t i = 0; i < sizeof(tmp_files) / sizeof(tmp_files[0]); i++)
		unlink(tmp_files[i]);
}

/* Wait up to @secs for RouDi to exit; its status, or -1 if it did not. */
static int roudi_wait(int secs)
{
	uint64_t end = now_ns() + (uint64_t)secs * 1000000000ull;
	int st;

	for (;;) {
		pid_t p = waitpid(roudi_pid, &st, WNOHANG);

		if (p == roudi_pid)
			return st;
		if (p < 0 && errno != EINTR)
			return 0;	/* reaped already: nothing to wait for */
		if (now_ns() > end)
			return -1;
		usleep(10000);
	}
}

/* 0, or -EIO if RouDi did not exit cleanly (its log says why). */
int ix_stop(void)
{
	int st;

	if (roudi_pid <= 0)
		return 0;
	/*
	 * SIGTERM: RouDi removes its shared memory and exits. With a
	 * process still registered (a child killed at an interrupted run)
	 * it signals it, fails (it is gone) and asserts, which can hang
	 * RouDi rather than end it: SIGKILL after the kill delay (-k) and
	 * some.
	 */
	kill(roudi_pid, SIGTERM);
	st = roudi_wait(IX_STOP_S);
	if (st == -1) {
		kill(roudi_pid, SIGKILL);
		st = roudi_wait(IX_STOP_S);
	}
	roudi_pid = 0;
	runtime_leftovers();
	if (st != -1 && WIFEXITED(st) && !WEXITSTATUS(st))
		return 0;
	fprintf(stderr, "shmbus-bench-peers: iox-roudi did not exit cleanly "
		"(status 0x%x; log %s); removing its shared memory\n", st,
		roudi_log);
	roudi_leftovers();
	return -EIO;
}

int ix_prepare(const struct run *r, int nchan)
{
	nr_runs++;
	return roudi_pid > 0 ? 0 : -ESRCH;
}

int ix_child_init(void)
{
	char name[64];

	/* one runtime per process, named uniquely for RouDi */
	snprintf(name, sizeof(name), IX_NAME_PREFIX "%d", (int)getpid());
	/* its debug lines would bury the progress on stderr */
	iox_set_loglevel(Iceoryx_LogLevel_Warn);
	iox_runtime_init(name);
	return 0;
}

void ix_child_fini(void)
{
	/*
	 * The runtime deregisters from RouDi and removes its socket and
	 * lock file (/tmp/NAME) in its destructor, which only exit() runs:
	 * a child that leaves by _exit() stays registered, and RouDi
	 * aborts at its own shutdown over a process it cannot signal,
	 * leaving its shared memory behind. (The parent's atexit handler
	 * does nothing in a child.) iox_runtime_shutdown() first would
	 * make that destructor's goodbye one RouDi no longer knows, and
	 * hang it.
	 */
	exit(0);
}

int ix_open(struct end *e, int chan)
{
	struct ix_end *ie = calloc(1, sizeof(*ie));
	char instance[32];

	if (!ie)
		return -ENOMEM;
	e->priv = ie;
	snprintf(instance, sizeof(instance), "run%u", nr_runs);
	if (e->tx) {
		iox_pub_options_t o;

		iox_pub_options_init(&o);
		o.historyCapacity = 0;
		o.subscriberTooSlowPolicy =
			ConsumerTooSlowPolicy_WAIT_FOR_CONSUMER;
		ie->pub = iox_pub_init(&ie->pub_mem, "shmbus-bench", instance,
				       chan ? "pong" : "ping", &o);
		return ie->pub ? 0 : -EINVAL;
	}
	iox_sub_options_t o;

	iox_sub_options_init(&o);
	o.queueCapacity = IX_QUEUE;
	o.historyRequest = 0;
	o.queueFullPolicy = QueueFullPolicy_BLOCK_PRODUCER;
	ie->sub = iox_sub_init(&ie->sub_mem, "shmbus-bench", instance,
			       chan ? "pong" : "ping", &o);
	if (!ie->sub)
		return -EINVAL;
	if (!e->block)
		return 0;
	ie->ws = iox_ws_init(&ie->ws_mem);
	if (!ie->ws)
		return -EINVAL;
	if (iox_ws_attach_subscriber_event(ie->ws, ie->sub,
					   SubscriberEvent_DATA_RECEIVED, 0,
					   NULL) != WaitSetResult_SUCCESS)
		return -EINVAL;
	return 0;
}

void ix_close(struct end *e)
{
	struct ix_end *ie = e->priv;

	if (!ie)
		return;
	if (ie->ws) {
		iox_ws_detach_subscriber_event(ie->ws, ie->sub,
					       SubscriberEvent_DATA_RECEIVED);
		iox_ws_deinit(ie->ws);
	}
	if (ie->sub)
		iox_sub_deinit(ie->sub);
	if (ie->pub)
		iox_pub_deinit(ie->pub);
	free(ie);
	e->priv = NULL;
}

static int ix_wait_subscriber(struct ix_end *ie)
{
	uint64_t end = now_ns() + IX_WAIT_S * 1000000000ull;

	while (!iox_pub_has_subscribers(ie->pub)) {
		if (now_ns() > end)
			return -ETIMEDOUT;
		usleep(1000);
	}
	return 0;
}

int ix_send(struct end *e, uint64_t seq)
{
	struct ix_end *ie = e->priv;
	void *p;
	int err;

	if (!ie->seen) {
		err = ix_wait_subscriber(ie);
		if (err)
			return err;
		ie->seen = true;
	}
	if (iox_pub_loan_chunk(ie->pub, &p, (uint32_t)e->size) !=
	    AllocationResult_SUCCESS)
		return -ENOMEM;
	fill(p, e->size, seq);
	iox_pub_publish_chunk(ie->pub, p);
	return 0;
}

int ix_recv(struct end *e, uint64_t seq)
{
	struct ix_end *ie = e->priv;
	enum iox_ChunkReceiveResult res;
	const void *p;
	int err;

	for (;;) {
		res = iox_sub_take_chunk(ie->sub, &p);
		if (res == ChunkReceiveResult_SUCCESS)
			break;
		if (res != ChunkReceiveResult_NO_CHUNK_AVAILABLE)
			return -EPROTO;
		if (ie->ws) {
			iox_notification_info_t info[1];
			uint64_t missed = 0;

			iox_ws_wait(ie->ws, info, 1, &missed);
		} else {
			cpu_relax();
		}
	}
	/* the C binding does not tell the chunk's length: the pattern,
	 * which starts with the sequence number, is the check */
	err = verify(p, e->size, seq);
	iox_sub_release_chunk(ie->sub, p);
	if (!err && iox_sub_has_lost_chunks(ie->sub))
		err = -ENOLINK;
	return err;
}
