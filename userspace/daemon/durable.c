// SPDX-License-Identifier: MIT
/*
 * durable.c - persistent queues: the state directory, the journal of each
 * persistent queue (journal.c), the intake its producers publish into,
 * confirms, the sync thread, and recovery (a cold start from the journal,
 * or a journal reattached to an adopted arena).
 *
 * The memory path stays what it is: a persistent queue Q is an ordinary
 * queue, and beside it an *intake* I (a directory entry of the same name,
 * SHMBUS_QF_INTAKE) whose ring its producers are bound to at attach. The
 * daemon is I's only consumer. For each batch it finds in I it appends a
 * PUB record per message to Q's journal and write()s them, then takes each
 * chunk from I and puts it into Q (ring_put, as any message it holds), and
 * confirms: at once (sync never) or when the sync thread's fdatasync that
 * covers the batch is done (always: started right away; batch: at most
 * one per interval). A confirm is one word in the producer's slot
 * (confirmed: every id of that slot up to it), which
 * shmbus_producer__confirm_wait() polls.
 *
 * What leaves Q is found, not told: consumers ack in shared memory as on
 * any queue, and the daemon's tick walks Q's live journal entries (in
 * queue order, a bounded number per tick) and looks at the chunk it put
 * each into: a chunk that is free, or holds another message id, means the
 * message is gone (acked, expired, dropped): a SETTLE record. A changed
 * delivery count, a lease or a hold is a STATE record. The daemon's own
 * moves (dead-lettering) settle explicitly. So nothing on the consumer's
 * path changes, and a daemon that dies loses no settle: the next one finds
 * the same facts in the arena.
 *
 * Crash safety of the hand-over I -> Q: a chunk stays in I until its
 * record is written (a daemon killed before leaves it there: the next one
 * journals it again; PUB of a known id is idempotent). Then its hold
 * record names Q and the daemon owns it (QUEUED), then it leaves I, then
 * ring_put() puts it into Q: a daemon killed in between leaves a chunk
 * that adoption requeues into Q by its hold record (adopt_held()).
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmbusd.h"
#include "epoch.h"
#include "pool.h"

#define DRAIN_BATCH		1024u	/* messages per journal write */
#define DRAIN_BUDGET		16384u	/* per event-loop turn, all queues */
#define POLL_HEAD		2048u	/* entries looked at per tick, oldest */
#define POLL_DEEP		2048u	/* ... and further on, round robin */
#define GC_PERIOD_NS		(100 * NSEC_PER_MSEC)
#define GC_BUDGET		(4u << 20)	/* bytes copied forward per gc */
#define DEF_SYNC_INTERVAL_NS	(2 * NSEC_PER_MSEC)

/* A confirm waiting for the sync that covers journal position pos. */
struct pend {
	uint64_t pos;
	uint64_t id;		/* the slot's messages up to this id */
	uint32_t slot, gen;
	int err;		/* nonzero: they failed */
};

struct dur {
	struct journal *j;
	char dir[PATH_MAX];
	struct pend *pend;
	size_t npend, pcap;
	uint64_t sync_token;	/* the sync running for us, 0 = none */
	int64_t dirty_since;	/* first write no sync covers yet, 0 none */
	int64_t gc_next;
	uint64_t poll_id;	/* the entry the deep walk resumes at */
	unsigned unloaded;	/* live entries without a chunk */
	uint64_t failed, written, syncs;
};

/* ---- the state directory ----------------------------------------------- */

/* short enough that every path under it fits PATH_MAX */
static char state_dir[PATH_MAX - 512];	/* "" = none */
static int state_lock = -1;		/* flock of STATE/lock, -1 = not ours */
static const char *state_why = "no state directory";
static int efd = -1;			/* intakes and sync completions */
static uint64_t segment_bytes;		/* --segment-size, 0 = the journal's */

static bool state_usable(void)
{
	return state_lock >= 0;
}

/* mkdir -p @path, each directory 0700. */
static int mkdirs(const char *path)
{
	char buf[PATH_MAX];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* fsync the directory @path: what was created or renamed in it stays. */
static int dir_sync(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		err = -errno;
	close(fd);
	return err;
}

/* Take STATE/lock: one daemon per state directory. */
static int state_take(void)
{
	char path[PATH_MAX + 8];
	int err, fd;

	if (state_lock >= 0)
		return 0;
	if (!state_dir[0])
		return -EOPNOTSUPP;
	err = mkdirs(state_dir);
	if (err) {
		log_warn("state directory %s: %s", state_dir, strerror(-err));
		state_why = "the state directory cannot be created (see the "
			    "daemon's log)";
		return err;
	}
	snprintf(path, sizeof(path), "%s/lock", state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		err = -errno;
		log_warn("state directory %s: lock: %s", state_dir,
			 strerror(errno));
		state_why = "the state directory's lock cannot be opened";
		return err;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		log_warn("state directory %s is in use by another daemon: no "
			 "persistent queues here", state_dir);
		state_why = "the state directory is in use by another daemon";
		close(fd);
		return -EBUSY;
	}
	state_lock = fd;
	return 0;
}

/* Is the file name @s a valid bus or queue name (proto_name_valid() wants
 * the zero-padded field)? */
static bool name_ok(const char *s)
{
	char f[SHMBUS_NAME_MAX] = { 0 };
	size_t n = strlen(s);

	if (n >= SHMBUS_NAME_MAX)
		return false;
	memcpy(f, s, n);
	return proto_name_valid(f) == 0;
}

/* STATE/UID/BUS and STATE/UID/BUS/QUEUE. */
static int bus_dir(const struct dbus *b, char *buf, size_t len)
{
	return snprintf(buf, len, "%s/%u/%s", state_dir, (unsigned)b->owner_uid,
			b->name) >= (int)len ? -ENAMETOOLONG : 0;
}

static int queue_dir(const struct dbus *b, const char *q, char *buf,
		     size_t len)
{
	return snprintf(buf, len, "%s/%u/%s/%s", state_dir,
			(unsigned)b->owner_uid, b->name, q) >= (int)len
	       ? -ENAMETOOLONG : 0;
}

static int file_get(const char *dir, const char *name, char *buf,
		    size_t cap);

/* Write @text to @dir/@name atomically: a temporary file, fsync, rename,
 * fsync of the directory. Nothing when it holds @text already (a
 * recovery on a full disk writes nothing). */
static int file_put(const char *dir, const char *name, const char *text)
{
	char tmp[PATH_MAX + 80], path[PATH_MAX + 80], have[1024];
	size_t len = strlen(text);
	int fd, err = 0;

	if (len < sizeof(have) && !file_get(dir, name, have, sizeof(have)) &&
	    !strcmp(have, text))
		return 0;
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		  0600);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0)
		err = errno ? -errno : -EIO;
	close(fd);
	if (!err && rename(tmp, path) < 0)
		err = -errno;
	if (err) {
		unlink(tmp);
		return err;
	}
	return dir_sync(dir);
}

/* Read @dir/@name (at most @cap - 1 bytes) into @buf, NUL-terminated. */
static int file_get(const char *dir, const char *name, char *buf, size_t cap)
{
	char path[PATH_MAX + 80];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

/* The value of "KEY VALUE" line @key in @text, as an unsigned number. */
static bool conf_num(const char *text, const char *key, uint64_t *out)
{
	size_t kl = strlen(key);

	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : l) {
		char *end;

		if (strncmp(l, key, kl) || l[kl] != ' ')
			continue;
		*out = strtoull(l + kl + 1, &end, 0);
		return end != l + kl + 1 && (*end == '\n' || !*end);
	}
	return false;
}

/* The word after "KEY " in @text into @buf (a name field), "" if none. */
static void conf_word(const char *text, const char *key, char *buf,
		      size_t cap)
{
	size_t kl = strlen(key);

	buf[0] = '\0';
	for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : l) {
		size_t n;

		if (strncmp(l, key, kl) || l[kl] != ' ')
			continue;
		n = strcspn(l + kl + 1, "\n");
		if (n < cap) {
			memcpy(buf, l + kl + 1, n);
			buf[n] = '\0';
		}
		return;
	}
}

/* bus.conf: what it takes to make the bus again after a reboot. */
static int bus_save(const struct dbus *b)
{
	const struct arena *a = &b->arena;
	char dir[PATH_MAX], text[1024];
	int n, err;

	err = bus_dir(b, dir, sizeof(dir));
	if (!err)
		err = mkdirs(dir);
	if (err)
		return err;
	n = snprintf(text, sizeof(text),
		     "gid %u\nmode 0%o\nmax_queues %u\nmax_slots %u\n"
		     "ring_bytes %llu\npools %u\n", (unsigned)b->owner_gid,
		     (unsigned)b->mode, a->max_queues, a->max_slots,
		     (unsigned long long)a->ring_units * SHMBUS_RING_UNIT,
		     a->nr_pools);
	for (unsigned i = 0; i < a->nr_pools; i++)
		n += snprintf(text + n, sizeof(text) - (size_t)n,
			      "pool%u %u\ncount%u %u\n", i,
			      a->pool[i].payload_max, i, a->pool[i].nr_chunks);
	return file_put(dir, "bus.conf", text);
}

/* queue.conf: the declare, as the daemon received it. */
static int queue_save(const char *dir, const struct sbc_queue_declare *q)
{
	char text[1024];

	snprintf(text, sizeof(text),
		 "max_len %u\nmsg_size %u\nmax_consumers %u\nflags %u\n"
		 "lease_ns %llu\nttl_ns %llu\nbackoff_init_ns %llu\n"
		 "backoff_max_ns %llu\nbackoff_mult_milli %u\n"
		 "max_deliveries %u\ndedup_window_ns %llu\noverflow %u\n"
		 "priorities %u\nsync %u\nsync_interval_ns %llu\ndlq %s\n",
		 q->max_len, q->msg_size, q->max_consumers, q->flags,
		 (unsigned long long)q->lease_ns, (unsigned long long)q->ttl_ns,
		 (unsigned long long)q->backoff_init_ns,
		 (unsigned long long)q->backoff_max_ns, q->backoff_mult_milli,
		 q->max_deliveries, (unsigned long long)q->dedup_window_ns,
		 q->overflow, q->priorities, q->sync,
		 (unsigned long long)q->sync_interval_ns, q->dlq[0] ? q->dlq : "");
	return file_put(dir, "queue.conf", text);
}

/* The declare queue.conf in @dir describes, for queue @name. */
static int queue_load(const char *dir, const char *name,
		      struct sbc_queue_declare *q)
{
	char text[1024];
	uint64_t v[15];
	static const char *const keys[] = {
		"max_len", "msg_size", "max_consumers", "flags", "lease_ns",
		"ttl_ns", "backoff_init_ns", "backoff_max_ns",
		"backoff_mult_milli", "max_deliveries", "dedup_window_ns",
		"overflow", "priorities", "sync", "sync_interval_ns",
	};
	int err = file_get(dir, "queue.conf", text, sizeof(text));

	if (err)
		return err;
	for (unsigned i = 0; i < 15; i++)
		if (!conf_num(text, keys[i], &v[i]))
			return -EBADMSG;
	memset(q, 0, sizeof(*q));
	if (!name_ok(name))
		return -EINVAL;
	memcpy(q->name, name, strlen(name));
	q->max_len = (uint32_t)v[0];
	q->msg_size = (uint32_t)v[1];
	q->max_consumers = (uint32_t)v[2];
	q->flags = (uint32_t)v[3];
	q->lease_ns = v[4];
	q->ttl_ns = v[5];
	q->backoff_init_ns = v[6];
	q->backoff_max_ns = v[7];
	q->backoff_mult_milli = (uint32_t)v[8];
	q->max_deliveries = (uint32_t)v[9];
	q->dedup_window_ns = v[10];
	q->overflow = (uint32_t)v[11];
	q->priorities = (uint32_t)v[12];
	q->sync = (uint32_t)v[13];
	q->sync_interval_ns = v[14];
	conf_word(text, "dlq", q->dlq, sizeof(q->dlq));
	if (q->dlq[0] && !name_ok(q->dlq))
		return -EBADMSG;
	return 0;
}

/* ---- the sync thread ---------------------------------------------------- */

/*
 * One thread calls fdatasync() for every journal, so the event loop never
 * waits for a disk. Requests and results are small records under a mutex;
 * a result is announced on the daemon's eventfd. While a sync of a
 * journal runs, what is written meanwhile waits for the next one, which
 * then covers all of it: group commit.
 */
struct sreq {
	struct sreq *next;
	uint64_t token;
	struct jsync s;
	int err;
	int64_t ns;
};

static struct {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct sreq *todo, **todo_tail, *done;
	bool running, stop;
	uint64_t seq;
} sy = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.cv = PTHREAD_COND_INITIALIZER,
};

static void *sync_main(void *arg)
{
	static const uint64_t one = 1;

	(void)arg;
	pthread_mutex_lock(&sy.mu);
	for (;;) {
		struct sreq *r;
		int64_t t;

		while (!sy.todo && !sy.stop)
			pthread_cond_wait(&sy.cv, &sy.mu);
		if (sy.stop)
			break;
		r = sy.todo;
		sy.todo = r->next;
		if (!sy.todo)
			sy.todo_tail = &sy.todo;
		pthread_mutex_unlock(&sy.mu);
		t = now_ns();
		r->err = journal_sync_run(&r->s);
		r->ns = now_ns() - t;
		pthread_mutex_lock(&sy.mu);
		r->next = sy.done;
		sy.done = r;
		/* a full counter means a wake-up is pending already */
		(void)!write(efd, &one, sizeof(one));
	}
	pthread_mutex_unlock(&sy.mu);
	return NULL;
}

static int sync_start_thread(void)
{
	sigset_t all, old;
	int err;

	if (sy.running)
		return 0;
	sy.todo_tail = &sy.todo;
	/* signals stay with the event loop (signalfd) */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	err = pthread_create(&sy.th, NULL, sync_main, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	sy.running = true;
	return 0;
}

/* The fds of a sync whose journal is gone. */
static void jsync_drop(struct jsync *s)
{
	for (unsigned i = 0; i < s->nfds; i++)
		close(s->fds[i]);
	if (s->dirfd >= 0)
		close(s->dirfd);
	s->nfds = 0;
	s->dirfd = -1;
}

/* Start a sync of @du's journal if none runs; else the running one's end
 * starts the next. */
static void sync_submit(struct dur *du)
{
	struct sreq *r;

	if (du->sync_token || !du->dirty_since)
		return;
	if (!sy.running && sync_start_thread()) {
		log_warn("journal sync: cannot start the sync thread; "
			 "retrying at the tick");
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		log_warn("journal sync: out of memory; retrying at the tick");
		return;
	}
	journal_sync_begin(du->j, &r->s);
	du->dirty_since = 0;
	pthread_mutex_lock(&sy.mu);
	r->token = ++sy.seq;
	du->sync_token = r->token;
	*sy.todo_tail = r;
	sy.todo_tail = &r->next;
	pthread_cond_signal(&sy.cv);
	pthread_mutex_unlock(&sy.mu);
}

/* ---- confirms ---------------------------------------------------------- */

/* Tell producer slot (@si, @gen) of @b: its messages up to @id are
 * confirmed, @err nonzero: failed. */
static void slot_confirm(struct dbus *b, uint32_t si, uint32_t gen,
			 uint64_t id, int err)
{
	struct shmbus_slot *s;

	if (si >= b->arena.max_slots || b->slots[si].gen != gen ||
	    !b->slots[si].conn_id)
		return;		/* gone: nobody waits */
	s = &b->arena.slots[si];
	if (err) {
		WRITE_ONCE(s->failed_err, err);
		WRITE_ONCE(s->failed, READ_ONCE(s->failed) + 1);
	}
	/* [CONFIRM] release: failed and failed_err before confirmed (pairs
	 * with the acquire in lib confirm_wait()) */
	if (id > READ_ONCE(s->confirmed))
		smp_store_release(&s->confirmed, id);
}

static int pend_add(struct dur *du, uint64_t pos, uint32_t si, uint32_t gen,
		    uint64_t id, int err)
{
	if (du->npend == du->pcap) {
		size_t cap = du->pcap ? 2 * du->pcap : 64;
		struct pend *p = realloc(du->pend, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		du->pend = p;
		du->pcap = cap;
	}
	du->pend[du->npend++] = (struct pend){ .pos = pos, .id = id,
					       .slot = si, .gen = gen,
					       .err = err };
	return 0;
}

/* Confirm every pending confirm of @du covered by position @upto. */
static void pend_flush(struct dbus *b, struct dur *du, uint64_t upto)
{
	size_t k = 0;

	for (size_t i = 0; i < du->npend; i++) {
		struct pend *p = &du->pend[i];

		if (p->pos <= upto)
			slot_confirm(b, p->slot, p->gen, p->id, p->err);
		else
			du->pend[k++] = *p;
	}
	du->npend = k;
}

/* ---- the journal's numbers in the arena --------------------------------- */

static void stats_publish(struct dbus *b, uint32_t qid)
{
	const struct dqueue *dq = &b->queues[qid];
	struct dur *du = dq->dur;
	struct journal_stats st;
	struct shmbus_queue *iq;

	if (!du || !dq->intake)
		return;
	iq = &b->arena.queues[dq->intake - 1];
	journal_stats(du->j, &st);
	WRITE_ONCE(iq->j_bytes, st.bytes);
	WRITE_ONCE(iq->j_live, st.live);
	WRITE_ONCE(iq->j_segments, st.segments);
	WRITE_ONCE(iq->j_failed, (uint32_t)du->failed);
	WRITE_ONCE(iq->j_replayed, st.replayed);
	WRITE_ONCE(iq->j_corrupt, st.corrupt);
	WRITE_ONCE(iq->j_syncs, du->syncs);
	WRITE_ONCE(iq->j_written, du->written);
	WRITE_ONCE(iq->j_interval_ns, dq->sync_interval_ns);
}

static void sync_histogram(struct dbus *b, int64_t ns)
{
	struct shmbus_sb *sb = b->arena.sb;
	uint64_t us = (uint64_t)MAX(ns, 0) / 1000;
	unsigned i = 0;

	while (us > 1 && i < 15) {
		us >>= 1;
		i++;
	}
	WRITE_ONCE(sb->sync_hist[i], READ_ONCE(sb->sync_hist[i]) + 1);
	WRITE_ONCE(sb->syncs, READ_ONCE(sb->syncs) + 1);
	WRITE_ONCE(sb->sync_ns, READ_ONCE(sb->sync_ns) + (uint64_t)MAX(ns, 0));
}

/* ---- time ---------------------------------------------------------------- */

/* CLOCK_MONOTONIC @mono as CLOCK_REALTIME (0 stays 0: "none"). */
static uint64_t to_rt(uint64_t mono, int64_t now, int64_t rt)
{
	return mono ? (uint64_t)MAX(rt + ((int64_t)mono - now), 1) : 0;
}

static uint64_t to_mono(uint64_t realt, int64_t now, int64_t rt)
{
	return realt ? (uint64_t)MAX(now + ((int64_t)realt - rt), 1) : 0;
}

/* ---- the intake: journal, then into the queue --------------------------- */

/* The message in chunk @c as a journal record, its lengths checked
 * against its pool. False if the header is garbage. */
static bool chunk_jmsg(const struct dbus *b, uint32_t ref,
		       struct shmbus_chunk *c, struct jmsg *m, int64_t now,
		       int64_t rt)
{
	uint32_t len = READ_ONCE(c->len), al = READ_ONCE(c->attr_len);

	if (ALIGN_UP((uint64_t)len, 8) + al >
	    b->arena.pool[SHMBUS_REF_POOL(ref)].payload_max)
		return false;
	memset(m, 0, sizeof(*m));
	m->id = READ_ONCE(c->id);
	m->pub_rt = (uint64_t)rt;
	m->expires_rt = to_rt(READ_ONCE(c->expires_ns), now, rt);
	m->due_rt = to_rt(READ_ONCE(c->not_before_ns), now, rt);
	m->corr_id = READ_ONCE(c->corr_id);
	m->dedup_key = READ_ONCE(c->dedup_key);
	m->delivery_count = READ_ONCE(c->delivery_count);
	m->mflags = READ_ONCE(c->flags) & SHMBUS_CF_CHECKSUM ? JM_CHECKSUM : 0;
	m->prio = READ_ONCE(c->prio);
	m->dl_reason = READ_ONCE(c->dl_reason);
	m->dl_count = READ_ONCE(c->dl_count);
	m->len = len;
	m->attr_len = al;
	m->payload = chunk_payload(c);
	m->attrs = chunk_payload(c) + ALIGN_UP(len, 8);
	return m->id != 0;
}

struct taken {
	uint64_t pos, v;
	uint32_t ref;
	uint32_t slot;		/* producer slot, UINT32_MAX = none */
	uint64_t id;
	bool ok;		/* journaled (or nothing to journal) */
};

/* Into @du's pending confirms: the highest id per producer slot of the
 * batch @t (@n), covered by position @pos, failed with @err. */
static void batch_confirms(struct dbus *b, struct dur *du, struct taken *t,
			   unsigned n, uint64_t pos, int err, bool now)
{
	for (unsigned i = 0; i < n; i++) {
		uint32_t si = t[i].slot;
		uint64_t id = t[i].id;

		if (si == UINT32_MAX)
			continue;
		/* one entry per slot: its last message in the batch */
		for (unsigned k = i + 1; k < n; k++)
			if (t[k].slot == si) {
				id = MAX(id, t[k].id);
				t[k].slot = UINT32_MAX;
			}
		if (now || err)
			slot_confirm(b, si, b->slots[si].gen, id, err);
		else if (pend_add(du, pos, si, b->slots[si].gen, id, 0))
			/* no memory to wait: say so rather than hang */
			slot_confirm(b, si, b->slots[si].gen, id, -ENOMEM);
	}
}

/* Move chunk @ref, journaled, from the intake (cell @pos, @v of ring @r)
 * into queue @qid. */
static void hand_over(struct dbus *b, uint32_t qid, struct ring *r,
		      struct taken *t, int64_t now)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, t->ref);
	const struct dqueue *dq = &b->queues[qid];
	uint64_t o = READ_ONCE(c->owner);
	uint32_t gen = SHMBUS_OWNER_GEN(o);
	struct jent *e;

	/* ours, with a record naming the queue, before it leaves the
	 * intake: a daemon killed from here on leaves a chunk the next one
	 * requeues (adopt_held), or finds again in the intake */
	hold_note(c, gen, qid, dq->gen, now);
	if (SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_QUEUED ||
	    !atomic_cmpxchg(&c->owner, &o, SHMBUS_OWNER(gen, SHMBUS_CHUNK_QUEUED,
							SHMBUS_OWNER_DAEMON)))
		return;		/* a member is playing with it: not ours */
	if (ring_take_at(r, t->pos, t->v)) {
		/* taken by someone else (only a member would): leave it */
		return;
	}
	WRITE_ONCE(c->owner, SHMBUS_OWNER(gen, SHMBUS_CHUNK_TIMED,
					  SHMBUS_OWNER_DAEMON));
	e = journal_find(dq->dur->j, t->id);
	if (e)
		e->user = (uint64_t)t->ref + 1;
	if (!ring_put(b, qid, t->ref)) {
		timer_add(b, qid, dq->gen, t->ref, now + RETRY_FULL_NS);
		server_want_tick();
	}
}

/* Drop chunk @t, which could not be journaled, from the intake. */
static void drop_taken(struct dbus *b, struct ring *r, struct taken *t)
{
	struct shmbus_chunk *c = chunk_at(&b->arena, t->ref);
	uint64_t o = c ? READ_ONCE(c->owner) : 0;

	if (ring_take_at(r, t->pos, t->v))
		return;
	if (!c || SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_QUEUED ||
	    !atomic_cmpxchg(&c->owner, &o,
			    SHMBUS_OWNER(SHMBUS_OWNER_GEN(o), SHMBUS_CHUNK_TIMED,
					 SHMBUS_OWNER_DAEMON)))
		return;
	chunk_drop(b, t->ref);
}

/*
 * One batch of persistent queue @qid's intake: journal, write, hand over,
 * confirm. Returns how many messages it took.
 */
static unsigned intake_batch(struct dbus *b, uint32_t qid)
{
	static struct taken t[DRAIN_BATCH];
	struct dqueue *dq = &b->queues[qid];
	struct dur *du = dq->dur;
	int64_t now = now_ns(), rt = realtime_ns();
	unsigned n = 0, bad = 0;
	uint64_t pos, v;
	struct ring r;
	int err = 0;

	dqueue_ring_level(b, &b->queues[dq->intake - 1], 0, &r);
	if (!ring_peek_head(&r, &pos, &v))
		return 0;
	/* the full cells from the head on: only we take from an intake, so
	 * they stay full until we do */
	for (; n < DRAIN_BATCH; n++, pos++) {
		uint64_t cv = READ_ONCE(ring_cell(&r, pos)->v);
		struct shmbus_chunk *c;
		struct jmsg m;
		uint64_t o;

		if (SHMBUS_CELL_SEQ(cv) != (uint32_t)(pos + 1))
			break;
		t[n] = (struct taken){ .pos = pos, .v = cv,
				       .ref = SHMBUS_CELL_REF(cv),
				       .slot = UINT32_MAX };
		c = chunk_at(&b->arena, t[n].ref);
		o = c ? READ_ONCE(c->owner) : 0;
		if (!c || SHMBUS_OWNER_STATE(o) != SHMBUS_CHUNK_QUEUED ||
		    !chunk_jmsg(b, t[n].ref, c, &m, now, rt)) {
			bad++;
			continue;	/* garbage: taken and counted below */
		}
		t[n].id = m.id;
		if (SHMBUS_OWNER_SLOT(o) < b->arena.max_slots &&
		    b->slots[SHMBUS_OWNER_SLOT(o)].conn_id)
			t[n].slot = SHMBUS_OWNER_SLOT(o);
		m.order = 0;
		err = journal_pub(du->j, &m);
		if (err)
			break;
		t[n].ok = true;
	}
	if (!err)
		err = journal_flush(du->j);
	if (err) {
		static int64_t last;

		if (now - last > NSEC_PER_SEC) {
			log_warn("bus %u:%s: queue '%s': journal write: %s; "
				 "%u messages dropped (their publishers get "
				 "the error)", b->owner_uid, b->name, dq->name,
				 strerror(-err), n);
			last = now;
		}
		du->failed += n;
		batch_confirms(b, du, t, n, 0, err, true);
		for (unsigned i = 0; i < n; i++)
			drop_taken(b, &r, &t[i]);
		fold(b, qid, SHMBUS_CTR_DROPPED, n);
		return n ? n : 1;
	}
	du->written += n - bad;
	for (unsigned i = 0; i < n; i++) {
		if (t[i].ok) {
			hand_over(b, qid, &r, &t[i], now);
		} else {
			if (!ring_take_at(&r, t[i].pos, t[i].v))
				fold(b, qid, SHMBUS_CTR_CORRUPT, 1);
		}
	}
	if (dq->sync == SHMBUS_JSYNC_NEVER) {
		batch_confirms(b, du, t, n, 0, 0, true);
	} else {
		batch_confirms(b, du, t, n, journal_written(du->j), 0, false);
		if (!du->dirty_since)
			du->dirty_since = now;
		if (dq->sync == SHMBUS_JSYNC_ALWAYS)
			sync_submit(du);
		else
			server_want_tick();	/* the interval's end */
	}
	return n;
}

/* Arm the intake of @qid: we sleep on its seat 0 (the daemon's eventfd).
 * True if a message is there already. */
static bool intake_arm(struct dbus *b, uint32_t qid)
{
	const struct dqueue *dq = &b->queues[qid];
	struct shmbus_queue *iq = &b->arena.queues[dq->intake - 1];
	struct ring r;

	atomic_fetch_or(&iq->sleep_mask[0], 1ULL);
	/* [WAKE] the bit before the re-check: a producer's ring cmpxchg, its
	 * fence, its load of the mask (lib wake.h) pairs with this */
	smp_mb__after_atomic();
	dqueue_ring_level(b, &b->queues[dq->intake - 1], 0, &r);
	return ring_peek_nonempty(&r);
}

/* ---- settles: what left the queue -------------------------------------- */

/*
 * Look at entry @e of queue @qid's journal: the chunk it was put in still
 * holds it (a STATE record if its delivery count, lease or hold changed),
 * or not (settled). Returns true if @e was settled (and is gone).
 */
static bool poll_one(struct dbus *b, uint32_t qid, struct jent *e, int64_t now,
		     int64_t rt)
{
	struct dur *du = b->queues[qid].dur;
	struct shmbus_chunk *c;
	uint64_t o1, o2, id, due;
	uint32_t dc, st, fl;

	if (!e->user)
		return false;		/* not loaded: on disk only */
	c = chunk_at(&b->arena, (uint32_t)(e->user - 1));
	if (!c) {
		journal_settle(du->j, e->id, SHMBUS_DLR_NONE);
		return true;
	}
	o1 = smp_load_acquire(&c->owner);
	id = READ_ONCE(c->id);
	dc = READ_ONCE(c->delivery_count);
	due = READ_ONCE(c->hold_due);
	/* [POLL] the header between two equal owner words is one
	 * message's: a chunk freed and reused changes the word (gen) */
	smp_rmb();
	o2 = READ_ONCE(c->owner);
	st = SHMBUS_OWNER_STATE(o1);
	if (o1 != o2)
		return false;		/* moving: look again next tick */
	if (st == SHMBUS_CHUNK_FREE || id != e->id) {
		journal_settle(du->j, e->id, SHMBUS_DLR_NONE);
		return true;
	}
	fl = e->mflags & ~JM_LEASED;
	if (st == SHMBUS_CHUNK_HELD)
		fl |= JM_LEASED;
	due = st == SHMBUS_CHUNK_TIMED ? to_rt(due, now, rt) : 0;
	if (dc != e->delivery_count || fl != e->mflags ||
	    (due && due != e->due_rt) || (!due && e->due_rt))
		journal_state(du->j, e->id, dc, due, fl);
	return false;
}

/* The tick's walk of @qid's journal: the oldest entries, and a stretch
 * further on, resuming where the last walk stopped (round robin). */
static void poll_queue(struct dbus *b, uint32_t qid, int64_t now)
{
	struct dur *du = b->queues[qid].dur;
	int64_t rt = realtime_ns();
	struct jent *e, *n, *c;
	unsigned k = 0;

	for (e = journal_first(du->j); e && k < POLL_HEAD; e = n, k++) {
		n = journal_next(du->j, e);
		poll_one(b, qid, e, now, rt);
	}
	/* the cursor is an id: an entry settled since is simply not found */
	c = du->poll_id ? journal_find(du->j, du->poll_id) : NULL;
	if (c && e && c->order > e->order)
		e = c;
	for (k = 0; e && k < POLL_DEEP; e = n, k++) {
		n = journal_next(du->j, e);
		poll_one(b, qid, e, now, rt);
	}
	du->poll_id = e ? e->id : 0;
}

/* ---- loading: messages from the journal into the arena ------------------ */

struct load_ctx {
	struct dbus *b;
	uint32_t qid;
	int64_t now, rt;
	unsigned loaded, unloaded, bad;
	uint64_t max_id;
};

/* Make message @m (entry @e) a chunk of queue @qid again: into its ring,
 * or on a timer until it is due. 0, -ENOMEM (no chunk: try later),
 * -EMSGSIZE (it fits no pool of this bus). */
static int load_one(struct load_ctx *lc, const struct jent *e,
		    const struct jmsg *m)
{
	struct dbus *b = lc->b;
	const struct arena *a = &b->arena;
	const struct dqueue *dq = &b->queues[lc->qid];
	uint64_t size = ALIGN_UP((uint64_t)m->len, 8) + m->attr_len;
	struct shmbus_chunk *c;
	struct jent *me;
	uint64_t due;
	uint32_t ref;
	int pi;

	if (m->len > dq->msg_size || m->attr_len > SHMBUS_ATTR_BYTES)
		return -EMSGSIZE;
	pi = pool_for_size(a, size);
	if (pi < 0)
		return pi;
	for (; pi < (int)a->nr_pools; pi++)
		if (pool_alloc(a, NULL, pi, (SHMBUS_CHUNK_TIMED << 16) |
			       SHMBUS_OWNER_DAEMON, &ref) == 0)
			break;
	if (pi == (int)a->nr_pools)
		return -ENOMEM;
	c = chunk_at(a, ref);
	memcpy(chunk_payload(c), m->payload, m->len);
	if (m->attr_len)
		memcpy(chunk_payload(c) + ALIGN_UP(m->len, 8), m->attrs,
		       m->attr_len);
	c->len = m->len;
	c->attr_len = (uint16_t)m->attr_len;
	c->flags = 0;
	c->id = m->id;
	c->ts_pub = to_mono(m->pub_rt, lc->now, lc->rt);
	c->corr_id = m->corr_id;
	c->reply_to = 0;	/* its requester's reply queue is gone */
	c->reply_gen = 0;
	c->delivery_count = m->delivery_count;
	c->expires_ns = to_mono(m->expires_rt, lc->now, lc->rt);
	c->not_before_ns = 0;
	c->refcnt = 0;
	c->dl_reason = m->dl_reason;
	c->dl_src_qid = 0;	/* queue ids are this arena's */
	c->dl_count = m->dl_count;
	c->dedup_key = m->dedup_key;
	c->prio = 0;
	if ((m->mflags & JM_CHECKSUM) || dq->checksum) {
		c->flags = SHMBUS_CF_CHECKSUM;
		c->checksum = chunk_checksum(c, m->len, m->attr_len);
	}
	me = journal_find(dq->dur->j, e->id);
	if (me)
		me->user = (uint64_t)ref + 1;
	lc->max_id = MAX(lc->max_id, m->id);
	due = to_mono(m->due_rt, lc->now, lc->rt);
	if (due > (uint64_t)lc->now)
		timer_add(b, lc->qid, dq->gen, ref, (int64_t)due);
	else if (!ring_put(b, lc->qid, ref))
		timer_add(b, lc->qid, dq->gen, ref, lc->now + RETRY_FULL_NS);
	return 0;
}

static int load_cb(void *arg, const struct jent *e, const struct jmsg *m)
{
	struct load_ctx *lc = arg;
	int err;

	if (e->user)
		return 0;		/* in the arena already */
	if (lc->unloaded) {
		lc->unloaded++;		/* keep the order: none after a miss */
		return 0;
	}
	err = load_one(lc, e, m);
	if (err == -ENOMEM) {
		lc->unloaded++;
		return 0;
	}
	if (err) {
		lc->bad++;
		journal_settle(lc->b->queues[lc->qid].dur->j, e->id,
			       SHMBUS_DLR_NONE);
		return 0;
	}
	lc->loaded++;
	return 0;
}

/* Load what of @qid's journal is not in the arena yet, in queue order,
 * while chunks last. */
static void load_queue(struct dbus *b, uint32_t qid, struct load_ctx *lc)
{
	struct dur *du = b->queues[qid].dur;

	memset(lc, 0, sizeof(*lc));
	lc->b = b;
	lc->qid = qid;
	lc->now = now_ns();
	lc->rt = realtime_ns();
	journal_each_live(du->j, load_cb, lc);
	du->unloaded = lc->unloaded;
	/* ids continue above every live one, loaded or still on disk: the
	 * id is the journal's key, and a PUB of a live id replaces it */
	for (struct jent *e = journal_first(du->j); e; e = journal_next(du->j, e))
		lc->max_id = MAX(lc->max_id, e->id);
	if (lc->max_id >= READ_ONCE(b->arena.sb->id_next))
		WRITE_ONCE(b->arena.sb->id_next, lc->max_id + 1);
	if (lc->bad)
		log_warn("bus %u:%s: queue '%s': %u journaled messages do "
			 "not fit this bus's pools or the queue's msg_size; "
			 "settled", b->owner_uid, b->name, b->queues[qid].name,
			 lc->bad);
	journal_flush(du->j);
}

/* The dedup keys of @qid's journal still in their window, back into the
 * intake's table (the producers' table), as seen. */
struct keys_ctx {
	struct dbus *b;
	const struct dqueue *iq;
	int64_t now, rt;
	unsigned n;
};

static void key_cb(void *arg, uint64_t key, uint64_t expires_rt)
{
	struct keys_ctx *kc = arg;
	const struct dqueue *iq = kc->iq;
	struct shmbus_dedup *t = unit_addr(kc->b, iq->dedup_first);
	uint64_t exp = to_mono(expires_rt, kc->now, kc->rt);

	if (!key || exp <= (uint64_t)kc->now)
		return;
	for (uint32_t i = 0; i < SHMBUS_DEDUP_PROBE; i++) {
		struct shmbus_dedup *d = &t[(key + i) & (iq->dedup_cap - 1)];

		if (d->key && d->key != key)
			continue;
		d->key = key;
		d->expires = exp;
		kc->n++;
		return;
	}
}

static void keys_restore(struct dbus *b, uint32_t qid)
{
	const struct dqueue *dq = &b->queues[qid];
	struct keys_ctx kc = { .b = b, .now = now_ns(), .rt = realtime_ns() };

	if (!dq->intake || !b->queues[dq->intake - 1].dedup_cap)
		return;
	kc.iq = &b->queues[dq->intake - 1];
	journal_each_key(dq->dur->j, (uint64_t)kc.rt, key_cb, &kc);
	if (kc.n)
		log_info("bus %u:%s: queue '%s': %u dedup keys restored",
			 b->owner_uid, b->name, dq->name, kc.n);
}

/* ---- persistent queues: open, declare, delete ---------------------------- */

/* Open @qid's journal in @dir and make @qid persistent. */
static int dur_open(struct dbus *b, uint32_t qid, const char *dir,
		    const struct sbc_queue_declare *req)
{
	struct dqueue *dq = &b->queues[qid];
	struct journal_cfg cfg = { .dedup_window_ns = req->dedup_window_ns,
				   .segment_bytes = segment_bytes };
	char name[2 * SHMBUS_NAME_MAX + 16], why[256];
	struct dur *du = calloc(1, sizeof(*du));
	int err;

	if (!du)
		return -ENOMEM;
	snprintf(name, sizeof(name), "%u:%s/%s", (unsigned)b->owner_uid,
		 b->name, dq->name);
	cfg.name = name;
	err = journal_open(dir, &cfg, &du->j, why, sizeof(why));
	if (err) {
		log_warn("bus %u:%s: queue '%s': journal %s: %s", b->owner_uid,
			 b->name, dq->name, dir, why);
		free(du);
		return err;
	}
	snprintf(du->dir, sizeof(du->dir), "%s", dir);
	dq->dur = du;
	dq->sync = req->sync;
	dq->sync_interval_ns = req->sync == SHMBUS_JSYNC_BATCH
			       ? (req->sync_interval_ns ? req->sync_interval_ns
							: DEF_SYNC_INTERVAL_NS)
			       : 0;
	return 0;
}

static void dur_close(struct dqueue *dq)
{
	struct dur *du = dq->dur;

	if (!du)
		return;
	journal_close(du->j);
	free(du->pend);
	free(du);
	dq->dur = NULL;
}

/* The intake of @qid: its eventfd seat is ours. */
static void intake_link(struct dbus *b, uint32_t qid, uint32_t iq)
{
	struct dqueue *dq = &b->queues[qid], *di = &b->queues[iq];

	dq->intake = iq + 1;
	di->intake = qid + 1;
	di->sync = dq->sync;
	if (di->seat_fds && di->seat_fds[0] < 0 && efd >= 0) {
		di->seat_fds[0] = fcntl(efd, F_DUPFD_CLOEXEC, 3);
		if (di->seat_fds[0] >= 0) {
			di->seat_epoch++;
			/* [SEATFD] before any producer is told of the seat
			 * (lib wake.c claim_seats) */
			WRITE_ONCE(b->arena.queues[iq].seat_epoch,
				   di->seat_epoch);
		}
	}
	dqueue_republish(b, qid);
	dqueue_republish(b, iq);
	stats_publish(b, qid);
	/* asleep on it from the start: a producer's first message wakes
	 * us; what is there already is drained at once */
	if (intake_arm(b, qid)) {
		static const uint64_t one = 1;

		(void)!write(efd, &one, sizeof(one));
	}
}

/* Is @req asking for what persistent queue @dq's queue.conf says? */
static bool same_declare(const struct dqueue *dq,
			 const struct sbc_queue_declare *req)
{
	struct sbc_queue_declare have, want = *req;

	if (queue_load(dq->dur->dir, dq->name, &have))
		return false;
	want.sync_interval_ns = want.sync == SHMBUS_JSYNC_BATCH &&
				!want.sync_interval_ns ? DEF_SYNC_INTERVAL_NS
						       : want.sync_interval_ns;
	have.sync_interval_ns = have.sync == SHMBUS_JSYNC_BATCH &&
				!have.sync_interval_ns ? DEF_SYNC_INTERVAL_NS
						       : have.sync_interval_ns;
	return !memcmp(&have, &want, sizeof(have));
}

/* What a persistent declare may ask for: 0, or -errno with the reason. */
static int declare_check(struct dbus *b, const struct sbc_queue_declare *req,
			 struct request *r)
{
	const char *why = NULL;

	if (req->flags & (SBC_QUEUE_TOPIC | SBC_QUEUE_PRIVATE))
		why = "a topic or a private queue cannot be durable";
	else if (req->priorities > 1)
		why = "a durable queue has one priority level";
	else if (req->overflow == SHMBUS_OVERFLOW_DROP_OLDEST)
		why = "a durable queue does not drop its oldest message "
		      "(overflow block or reject)";
	else if (req->sync > SHMBUS_JSYNC_NEVER || req->__pad ||
		 (req->sync != SHMBUS_JSYNC_BATCH && req->sync_interval_ns) ||
		 (req->sync_interval_ns &&
		  (req->sync_interval_ns < 100 * NSEC_PER_USEC ||
		   req->sync_interval_ns > NSEC_PER_SEC)))
		why = "sync must be always, batch (interval 100 us .. 1 s) or "
		      "never";
	if (why) {
		req_reason(r, "%s", why);
		return -EINVAL;
	}
	if (req->dlq[0]) {
		int d = dqueue_find(b, req->dlq);

		if (d >= 0 && !b->queues[d].dur) {
			req_reason(r, "the dead-letter queue of a durable queue "
				   "must be durable ('%s' is not)", req->dlq);
			return -EINVAL;
		}
	}
	return 0;
}

/* Make @name's intake and open its journal: the second half of a
 * persistent declare, and of a recovery. */
static int persist(struct dbus *b, const struct peer *p, uint32_t qid,
		   const struct sbc_queue_declare *req, struct request *r)
{
	struct sbc_queue_declare iq = { 0 };
	struct sbc_queue_declare_reply irep;
	char dir[PATH_MAX];
	int err;

	err = queue_dir(b, req->name, dir, sizeof(dir));
	if (!err)
		err = mkdirs(dir);
	if (!err)
		err = bus_save(b);
	if (!err)
		err = queue_save(dir, req);
	if (err) {
		log_warn("bus %u:%s: queue '%s': state directory: %s",
			 b->owner_uid, b->name, req->name, strerror(-err));
		req_reason(r, "cannot write the queue's state: %s",
			   strerror(-err));
		return err;
	}
	err = dur_open(b, qid, dir, req);
	if (err) {
		req_reason(r, "cannot open the queue's journal (see the "
			   "daemon's log)");
		return err;
	}
	memcpy(iq.name, req->name, sizeof(iq.name));
	iq.max_len = req->max_len;
	iq.msg_size = req->msg_size;
	iq.max_consumers = 1;		/* the daemon */
	iq.flags = req->flags & SBC_QUEUE_CHECKSUM;
	iq.ttl_ns = req->ttl_ns;	/* producers stamp the expiry */
	iq.dedup_window_ns = req->dedup_window_ns;	/* producers' table */
	iq.overflow = req->overflow;
	err = queue_create(b, p, &iq, &irep, DQ_INTAKE);
	if (err) {
		dur_close(&b->queues[qid]);
		req_reason(r, "no room for the queue's intake (a durable "
			   "queue takes two directory entries and twice its "
			   "ring)");
		return err;
	}
	intake_link(b, qid, irep.qid);
	return 0;
}

/* A durable queue is gone: its intake, and on disk its journal. */
static void unpersist(struct dbus *b, uint32_t qid, bool files)
{
	struct dqueue *dq = &b->queues[qid];
	char dir[PATH_MAX];

	if (dq->intake && b->queues[dq->intake - 1].live &&
	    b->queues[dq->intake - 1].kind == DQ_INTAKE)
		dqueue_delete(b, (int)dq->intake - 1);
	dq->intake = 0;
	if (dq->dur) {
		snprintf(dir, sizeof(dir), "%s", dq->dur->dir);
		dur_close(dq);
		if (files && journal_destroy(dir) == 0)
			log_info("bus %u:%s: queue '%s': journal removed",
				 b->owner_uid, b->name, dq->name);
	}
}

int durable_declare(struct dbus *b, const struct peer *p,
		    const struct sbc_queue_declare *req,
		    struct sbc_queue_declare_reply *rep, struct request *r)
{
	struct sbc_queue_declare q = *req;
	struct load_ctx lc;
	int id, err;

	err = declare_check(b, req, r);
	if (err)
		return err;
	id = dqueue_find(b, req->name);
	if (id >= 0) {
		const struct dqueue *dq = &b->queues[id];

		if (!dq->dur || dq->kind != DQ_QUEUE || !same_declare(dq, req)) {
			req_reason(r, "queue '%s' exists with other settings",
				   req->name);
			return -EEXIST;
		}
		rep->qid = (uint32_t)id;
		rep->gen = dq->gen;
		rep->created = 0;
		return 0;
	}
	if (!state_usable() && state_take()) {
		req_reason(r, "the daemon keeps no durable queues: %s",
			   state_why);
		return -EOPNOTSUPP;
	}
	/* the queue consumers see: everything a declare gives, but the
	 * dedup table, which is the intake's (its producers') */
	q.flags &= ~SBC_QUEUE_DURABLE;
	q.dedup_window_ns = 0;
	q.sync = 0;
	q.sync_interval_ns = 0;
	err = queue_create(b, p, &q, rep, DQ_QUEUE);
	if (err)
		return err;
	err = persist(b, p, rep->qid, req, r);
	if (err) {
		dqueue_delete(b, (int)rep->qid);
		return err;
	}
	b->queues[rep->qid].dedup_window_ns = req->dedup_window_ns;
	/* a journal left by an earlier life of this queue comes back */
	load_queue(b, rep->qid, &lc);
	keys_restore(b, rep->qid);
	if (lc.loaded || lc.unloaded)
		log_info("bus %u:%s: queue '%s': %u messages back from its "
			 "journal", b->owner_uid, b->name, req->name,
			 lc.loaded);
	log_info("bus %u:%s: queue '%s' is durable (sync %s), journal %s",
		 b->owner_uid, b->name, req->name,
		 req->sync == SHMBUS_JSYNC_ALWAYS ? "always" :
		 req->sync == SHMBUS_JSYNC_BATCH ? "batch" : "never",
		 b->queues[rep->qid].dur->dir);
	stats_publish(b, rep->qid);
	return 0;
}

void durable_deleted(struct dbus *b, uint32_t qid)
{
	if (b->queues[qid].kind == DQ_QUEUE &&
	    (b->queues[qid].dur || b->queues[qid].intake))
		unpersist(b, qid, true);
}

/* ---- dead-lettering out of a persistent queue ---------------------------- */

int durable_dead_letter(struct dbus *b, uint32_t qid, uint32_t dlq,
			uint32_t ref)
{
	struct dqueue *dq = &b->queues[qid];
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	int64_t now = now_ns(), rt = realtime_ns();
	struct dur *dd;
	struct jmsg m;
	int err;

	if (!c || dlq == UINT32_MAX || !(dd = b->queues[dlq].dur))
		return 0;
	if (!chunk_jmsg(b, ref, c, &m, now, rt))
		return -EBADMSG;
	/* in the DLQ's journal, on stable storage, before the queue's
	 * record of it goes: a crash in between leaves it in both, never
	 * in neither. Dead-lettering is rare: one sync here is cheap. */
	err = journal_pub(dd->j, &m);
	if (!err)
		err = journal_flush(dd->j);
	if (!err) {
		struct jsync s;
		struct jent *e;

		journal_sync_begin(dd->j, &s);
		err = journal_sync_run(&s);
		journal_sync_end(dd->j, &s, err);
		e = journal_find(dd->j, m.id);
		if (e)
			e->user = (uint64_t)ref + 1;
	}
	if (err)
		log_warn("bus %u:%s: dead-letter queue '%s': journal: %s",
			 b->owner_uid, b->name, b->queues[dlq].name,
			 strerror(-err));
	(void)dq;
	return err;
}

void durable_left(struct dbus *b, uint32_t qid, uint32_t ref, uint32_t reason)
{
	struct dqueue *dq = &b->queues[qid];
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);

	if (!dq->dur || !c)
		return;
	journal_settle(dq->dur->j, READ_ONCE(c->id), reason);
	if (journal_flush(dq->dur->j) == 0 && !dq->dur->dirty_since)
		dq->dur->dirty_since = now_ns();
}

/* ---- the event loop's part ----------------------------------------------- */

/* Persistent queue @du of some bus, by its running sync's token. */
static struct dur *dur_by_token(struct daemon *d, uint64_t token,
				struct dbus **bp)
{
	for (struct dbus *b = d->buses; b; b = b->next)
		for (uint32_t i = 0; i < b->arena.max_queues; i++)
			if (b->queues[i].dur &&
			    b->queues[i].dur->sync_token == token) {
				*bp = b;
				return b->queues[i].dur;
			}
	return NULL;
}

/* Syncs the thread finished: confirm what they covered. */
static void sync_collect(struct daemon *d)
{
	struct sreq *done;

	pthread_mutex_lock(&sy.mu);
	done = sy.done;
	sy.done = NULL;
	pthread_mutex_unlock(&sy.mu);
	while (done) {
		struct sreq *r = done;
		struct dbus *b = NULL;
		struct dur *du = dur_by_token(d, r->token, &b);

		done = r->next;
		if (!du) {
			/* its queue went meanwhile */
			jsync_drop(&r->s);
			free(r);
			continue;
		}
		journal_sync_end(du->j, &r->s, r->err);
		du->sync_token = 0;
		du->syncs++;
		sync_histogram(b, r->ns);
		if (r->err) {
			/* what it covered may not be on disk: whoever waits
			 * for it hears so (their messages stay queued) */
			log_err("bus %u:%s: journal %s: fdatasync: %s",
				b->owner_uid, b->name, du->dir,
				strerror(-r->err));
			for (size_t i = 0; i < du->npend; i++)
				if (du->pend[i].pos <= r->s.pos)
					du->pend[i].err = r->err;
			pend_flush(b, du, r->s.pos);
		} else {
			pend_flush(b, du, journal_synced(du->j));
		}
		free(r);
	}
}

/* Every persistent queue's intake, within a budget; armed when empty.
 * True if work is left (the caller comes back at once). */
static bool drain_all(struct daemon *d)
{
	unsigned total = 0;

	for (struct dbus *b = d->buses; b; b = b->next) {
		for (uint32_t qid = 0; qid < b->arena.max_queues; qid++) {
			const struct dqueue *dq = &b->queues[qid];

			if (!dq->live || !dq->dur || !dq->intake)
				continue;
			for (;;) {
				unsigned n = intake_batch(b, qid);

				total += n;
				if (total >= DRAIN_BUDGET)
					return true;
				if (n < DRAIN_BATCH && !intake_arm(b, qid))
					break;
			}
			stats_publish(b, qid);
		}
	}
	return false;
}

int durable_fd(void)
{
	return efd;
}

void durable_run(struct daemon *d)
{
	static const uint64_t one = 1;
	uint64_t v;

	if (read(efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("durable eventfd: %s", strerror(errno));
	sync_collect(d);
	if (drain_all(d) && write(efd, &one, sizeof(one)) < 0)
		server_want_tick();
}

int64_t durable_tick(struct dbus *b, int64_t now)
{
	int64_t next = INT64_MAX;

	for (uint32_t qid = 0; qid < b->arena.max_queues; qid++) {
		struct dqueue *dq = &b->queues[qid];
		struct dur *du = dq->dur;
		struct journal_stats st;
		uint64_t w;

		if (!dq->live || !du)
			continue;
		/* a wake-up we missed (a producer with an old eventfd after
		 * a restart) costs at most one tick */
		if (dq->intake && intake_arm(b, qid))
			(void)!write(efd, &(uint64_t){ 1 }, sizeof(uint64_t));
		w = journal_written(du->j);
		poll_queue(b, qid, now);
		if (journal_flush(du->j) == 0 && journal_written(du->j) != w &&
		    dq->sync != SHMBUS_JSYNC_NEVER && !du->dirty_since)
			du->dirty_since = now;
		if (du->dirty_since) {
			int64_t due = dq->sync == SHMBUS_JSYNC_BATCH
				      ? du->dirty_since +
					(int64_t)dq->sync_interval_ns
				      : now;

			if (now >= due)
				sync_submit(du);
			else
				next = MIN(next, due);
		}
		if (now >= du->gc_next) {
			if (du->unloaded) {
				struct load_ctx lc;

				load_queue(b, qid, &lc);
			}
			journal_gc(du->j, (uint64_t)realtime_ns(), GC_BUDGET);
			du->gc_next = now + GC_PERIOD_NS;
			stats_publish(b, qid);
		}
		journal_stats(du->j, &st);
		if (st.live || du->npend)
			next = MIN(next, du->gc_next);
	}
	return next;
}

/* ---- a bus comes back ----------------------------------------------------- */

/* The intake (DQ_INTAKE) of queue @name on @b, or -ENOENT. */
static int intake_find(const struct dbus *b, const char *name)
{
	for (uint32_t i = 0; i < b->arena.max_queues; i++)
		if (b->queues[i].live && b->queues[i].kind == DQ_INTAKE &&
		    !strncmp(b->queues[i].name, name, SHMBUS_NAME_MAX))
			return (int)i;
	return -ENOENT;
}

/* Adopted bus @b's chunks, matched to the live entries of @qid's journal
 * (by id); an entry whose message no chunk holds any more left while no
 * daemon ran: settled. */
static void adopt_match(struct dbus *b, uint32_t qid)
{
	const struct arena *a = &b->arena;
	struct dur *du = b->queues[qid].dur;
	unsigned gone = 0;
	struct jent *e, *n;

	for (unsigned p = 0; p < a->nr_pools; p++) {
		for (uint32_t i = 0; i < a->pool[p].nr_chunks; i++) {
			uint32_t ref = SHMBUS_REF(p, i);
			struct shmbus_chunk *c = chunk_at(a, ref);

			if (SHMBUS_OWNER_STATE(READ_ONCE(c->owner)) ==
			    SHMBUS_CHUNK_FREE)
				continue;
			e = journal_find(du->j, READ_ONCE(c->id));
			if (e && !e->user)
				e->user = (uint64_t)ref + 1;
		}
	}
	for (e = journal_first(du->j); e; e = n) {
		n = journal_next(du->j, e);
		if (!e->user) {
			journal_settle(du->j, e->id, SHMBUS_DLR_NONE);
			gone++;
		}
	}
	if (gone)
		log_info("bus %u:%s: queue '%s': %u journaled messages were "
			 "acked while no daemon ran", b->owner_uid, b->name,
			 b->queues[qid].name, gone);
}

/*
 * Confirm every producer of @qid's intake up to the last id it had taken
 * when we looked: what it published is in the intake (journaled here
 * first), or was journaled by the dead daemon (journal_open() made all of
 * that durable). One sync covers what we add; it blocks the loop, once
 * per adopted queue.
 */
static void confirm_all(struct dbus *b, uint32_t qid)
{
	const struct dqueue *dq = &b->queues[qid];
	const uint32_t iq = dq->intake - 1;
	uint64_t *last = calloc(b->arena.max_slots, sizeof(*last));
	struct jsync s;
	int err;

	if (!last)
		return;		/* they wait for confirms of new messages */
	for (uint32_t si = 0; si < b->arena.max_slots; si++)
		if (b->slots[si].conn_id && b->slots[si].qid == iq &&
		    b->slots[si].role == SHMBUS_ROLE_PRODUCER)
			last[si] = READ_ONCE(b->arena.slots[si].id_next);
	/* [CONFIRM] an id taken before we looked is in the intake by now,
	 * or its publish failed: a producer takes its id before its ring
	 * cmpxchg, and a failed publish is not waited for */
	while (intake_batch(b, qid) == DRAIN_BATCH)
		;
	journal_sync_begin(dq->dur->j, &s);
	err = journal_sync_run(&s);
	journal_sync_end(dq->dur->j, &s, err);
	if (err) {
		log_err("bus %u:%s: queue '%s': journal sync: %s", b->owner_uid,
			b->name, dq->name, strerror(-err));
	} else {
		pend_flush(b, dq->dur, journal_synced(dq->dur->j));
		for (uint32_t si = 0; si < b->arena.max_slots; si++)
			if (last[si] > 1)
				slot_confirm(b, si, b->slots[si].gen,
					     last[si] - 1, 0);
	}
	free(last);
}

/*
 * Adopted bus @b: its persistent queues get their journals back. What was
 * published into an intake since the dead daemon's last write is
 * journaled now; then every producer of an intake is confirmed up to the
 * last id it had taken when we looked (its messages are in the intake,
 * journaled now, or were journaled by the dead daemon, and the sync we
 * start covers both).
 */
void durable_adopted(struct dbus *b)
{
	char dir[PATH_MAX], qdir[PATH_MAX + SHMBUS_NAME_MAX + 2];
	struct dirent *de;
	DIR *dd;

	if (!state_dir[0] || bus_dir(b, dir, sizeof(dir)))
		return;
	dd = opendir(dir);
	if (!dd)
		return;		/* no persistent queues */
	if (!state_usable() && state_take()) {
		log_err("bus %u:%s: its durable queues' journals are in %s, "
			"which this daemon cannot use (%s): they go on in "
			"memory only", b->owner_uid, b->name, state_dir,
			state_why);
		closedir(dd);
		return;
	}
	while ((de = readdir(dd))) {
		struct sbc_queue_declare req;
		int qid, iq;

		if (!name_ok(de->d_name) || de->d_type != DT_DIR)
			continue;
		snprintf(qdir, sizeof(qdir), "%s/%s", dir, de->d_name);
		if (queue_load(qdir, de->d_name, &req))
			continue;
		qid = dqueue_find(b, de->d_name);
		iq = intake_find(b, de->d_name);
		if (qid < 0 || b->queues[qid].kind != DQ_QUEUE || iq < 0) {
			log_warn("bus %u:%s: durable queue '%s' (journal %s) "
				 "is not in the adopted arena as a queue with "
				 "its intake; its journal is kept and comes "
				 "back when the queue is declared again",
				 b->owner_uid, b->name, de->d_name, qdir);
			continue;
		}
		if (dur_open(b, (uint32_t)qid, qdir, &req))
			continue;
		b->queues[qid].dedup_window_ns = req.dedup_window_ns;
		intake_link(b, (uint32_t)qid, (uint32_t)iq);
		adopt_match(b, (uint32_t)qid);
		confirm_all(b, (uint32_t)qid);
		log_info("bus %u:%s: durable queue '%s': journal reattached",
			 b->owner_uid, b->name, de->d_name);
	}
	closedir(dd);
}

/*
 * Make bus @name of @uid again from its bus.conf and its queues' journals
 * (the daemon, and every process that mapped it, went away: a reboot).
 */
static int recover_bus(struct daemon *d, uid_t uid, const char *name,
		       struct dbus **out)
{
	char dir[PATH_MAX], qdir[PATH_MAX + SHMBUS_NAME_MAX + 2], text[1024];
	struct sbc_queue_declare *qs = NULL;
	struct sbc_bus_open req = { 0 };
	struct peer p = { .pid = getpid(), .uid = uid };
	struct request r = { 0 };
	size_t nq = 0, cap = 0;
	unsigned done = 0, msgs = 0;
	int64_t t0 = now_ns();
	struct dbus *b;
	struct dirent *de;
	uint64_t v, pools;
	DIR *dd;
	int err;

	snprintf(dir, sizeof(dir), "%s/%u/%s", state_dir, (unsigned)uid, name);
	if (!name_ok(name))
		return -EINVAL;
	memcpy(req.name, name, strlen(name));
	if (file_get(dir, "bus.conf", text, sizeof(text)))
		return -ENOENT;
	req.flags = SBC_OPEN_CREATE | SBC_OPEN_EXCL;
	if (!conf_num(text, "gid", &v) || (p.gid = (gid_t)v, false) ||
	    !conf_num(text, "mode", &v) || (req.mode = (uint32_t)v, false) ||
	    !conf_num(text, "max_queues", &v) ||
	    (req.max_queues = (uint32_t)v, false) ||
	    !conf_num(text, "max_slots", &v) ||
	    (req.max_slots = (uint32_t)v, false) ||
	    !conf_num(text, "ring_bytes", &req.ring_bytes) ||
	    !conf_num(text, "pools", &pools) || pools > SHMBUS_MAX_POOLS) {
		log_err("state %s/bus.conf is malformed: bus not recovered",
			dir);
		return -EBADMSG;
	}
	req.nr_pools = (uint32_t)pools;
	for (unsigned i = 0; i < pools; i++) {
		char k[16];

		snprintf(k, sizeof(k), "pool%u", i);
		if (!conf_num(text, k, &v))
			return -EBADMSG;
		req.pools[i].payload = (uint32_t)v;
		snprintf(k, sizeof(k), "count%u", i);
		if (!conf_num(text, k, &v))
			return -EBADMSG;
		req.pools[i].count = (uint32_t)v;
	}
	p.groups = p.groups_inline;
	err = bus_create(d, &req, &p, &b, &r);
	if (err) {
		log_err("bus %u:%s: not recovered: %s%s%s", (unsigned)uid, name,
			strerror(-err), r.reason[0] ? ": " : "", r.reason);
		return err;
	}
	/* the queues, each after its dead-letter queue */
	dd = opendir(dir);
	while (dd && (de = readdir(dd))) {
		if (!name_ok(de->d_name) || de->d_type != DT_DIR)
			continue;
		if (nq == cap) {
			struct sbc_queue_declare *n;

			cap = cap ? 2 * cap : 16;
			n = realloc(qs, cap * sizeof(*qs));
			if (!n)
				break;
			qs = n;
		}
		snprintf(qdir, sizeof(qdir), "%s/%s", dir, de->d_name);
		if (queue_load(qdir, de->d_name, &qs[nq])) {
			log_err("state %s/queue.conf is malformed: queue not "
				"recovered (its journal is kept)", qdir);
			continue;
		}
		nq++;
	}
	if (dd)
		closedir(dd);
	for (bool progress = true; progress && done < nq;) {
		progress = false;
		for (size_t i = 0; i < nq; i++) {
			struct sbc_queue_declare_reply rep;
			struct sbc_queue_declare *q = &qs[i];
			struct journal_stats st;
			int id;

			if (!q->name[0] || (q->dlq[0] &&
					    dqueue_find(b, q->dlq) < 0))
				continue;
			memset(&r, 0, sizeof(r));
			err = durable_declare(b, &p, q, &rep, &r);
			if (err) {
				log_err("bus %u:%s: queue '%s' not recovered: "
					"%s%s%s", (unsigned)uid, name, q->name,
					strerror(-err), r.reason[0] ? ": " : "",
					r.reason);
			} else {
				id = (int)rep.qid;
				journal_stats(b->queues[id].dur->j, &st);
				msgs += (unsigned)st.live;
			}
			q->name[0] = '\0';
			done++;
			progress = true;
		}
	}
	for (size_t i = 0; i < nq; i++)
		if (qs[i].name[0])
			log_err("bus %u:%s: queue '%s' not recovered: its "
				"dead-letter queue '%s' did not come back",
				(unsigned)uid, name, qs[i].name, qs[i].dlq);
	free(qs);
	WRITE_ONCE(b->arena.sb->recovery_ns, (uint64_t)(now_ns() - t0));
	WRITE_ONCE(b->arena.sb->recovered, msgs);
	log_info("bus %u:%s recovered from %s: %u durable queues, %u messages, "
		 "%.1f ms", (unsigned)uid, name, dir, done, msgs,
		 (double)(now_ns() - t0) / 1e6);
	*out = b;
	return 0;
}

int durable_bus_open(struct daemon *d, uid_t uid, const char *name,
		     struct dbus **out)
{
	char dir[PATH_MAX];
	struct stat st;

	if (!state_dir[0])
		return 0;
	snprintf(dir, sizeof(dir), "%s/%u/%s/bus.conf", state_dir,
		 (unsigned)uid, name);
	if (stat(dir, &st) < 0)
		return 0;
	if (!state_usable() && state_take())
		return 0;
	return recover_bus(d, uid, name, out) ? 0 : 1;
}

void durable_recover(struct daemon *d)
{
	struct dirent *ue;
	DIR *sd;

	if (!state_dir[0] || !(sd = opendir(state_dir)))
		return;
	if (!state_usable() && state_take()) {
		closedir(sd);
		return;
	}
	while ((ue = readdir(sd))) {
		char udir[PATH_MAX + 16], *end;
		unsigned long uid = strtoul(ue->d_name, &end, 10);
		struct dirent *be;
		DIR *ud;

		if (*end || end == ue->d_name || uid > UINT32_MAX - 1)
			continue;
		snprintf(udir, sizeof(udir), "%s/%s", state_dir, ue->d_name);
		if (!(ud = opendir(udir)))
			continue;
		while ((be = readdir(ud))) {
			struct dbus *b;

			if (!name_ok(be->d_name) || be->d_type != DT_DIR ||
			    bus_find(d, (uid_t)uid, be->d_name))
				continue;	/* adopted: journals reattached */
			if (adopt_pending((uid_t)uid, be->d_name)) {
				log_info("bus %lu:%s: held by running processes "
					 "that have not rejoined; recovered from "
					 "its journals if they never do", uid,
					 be->d_name);
				continue;
			}
			recover_bus(d, (uid_t)uid, be->d_name, &b);
		}
		closedir(ud);
	}
	closedir(sd);
}

/* ---- start and end ---------------------------------------------------------- */

int durable_setup(const char *dir, uint64_t seg_bytes)
{
	segment_bytes = seg_bytes;
	efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd < 0)
		return -errno;
	/* the sync thread starts with the first sync: a daemon without
	 * durable queues stays one thread */
	if (!dir)
		return 0;
	if (snprintf(state_dir, sizeof(state_dir), "%s", dir) >=
	    (int)sizeof(state_dir))
		return -ENAMETOOLONG;
	log_info("state directory %s (durable queues)", state_dir);
	return 0;
}

void durable_bus_free(struct dbus *b)
{
	for (uint32_t i = 0; i < b->arena.max_queues; i++)
		dur_close(&b->queues[i]);
}

void durable_fini(void)
{
	if (sy.running) {
		pthread_mutex_lock(&sy.mu);
		sy.stop = true;
		pthread_cond_signal(&sy.cv);
		pthread_mutex_unlock(&sy.mu);
		pthread_join(sy.th, NULL);
		sy.running = false;
	}
	while (sy.todo) {
		struct sreq *r = sy.todo;

		sy.todo = r->next;
		jsync_drop(&r->s);
		free(r);
	}
	while (sy.done) {
		struct sreq *r = sy.done;

		sy.done = r->next;
		jsync_drop(&r->s);
		free(r);
	}
	if (state_lock >= 0)
		close(state_lock);
	state_lock = -1;
	if (efd >= 0)
		close(efd);
	efd = -1;
}

/* ---- delayed publishes ------------------------------------------------------ */

bool durable_delayed(struct dbus *b, const struct dslot *ds, uint32_t si,
		     uint32_t ref, int64_t delay_ns)
{
	const struct dqueue *di = &b->queues[ds->qid];
	struct shmbus_chunk *c = chunk_at(&b->arena, ref);
	int64_t now = now_ns(), rt = realtime_ns();
	struct dqueue *dq;
	struct jent *e;
	struct jmsg m;
	uint32_t qid;
	int err;

	if (di->kind != DQ_INTAKE || !di->intake || !c)
		return false;
	qid = di->intake - 1;
	dq = &b->queues[qid];
	if (!dq->dur)
		return false;
	/* what this producer put into the intake before goes first: the
	 * slot's confirm covers every id up to this one */
	while (intake_batch(b, qid) == DRAIN_BATCH)
		;
	if (!chunk_jmsg(b, ref, c, &m, now, rt)) {
		chunk_drop(b, ref);
		return true;
	}
	m.due_rt = (uint64_t)rt + (uint64_t)delay_ns;
	err = journal_pub(dq->dur->j, &m);
	if (!err)
		err = journal_flush(dq->dur->j);
	if (!err && dq->sync != SHMBUS_JSYNC_NEVER) {
		struct jsync s;

		/* rare enough to sync here, in the loop */
		journal_sync_begin(dq->dur->j, &s);
		err = journal_sync_run(&s);
		journal_sync_end(dq->dur->j, &s, err);
		dq->dur->syncs++;
		if (!err)
			pend_flush(b, dq->dur, journal_synced(dq->dur->j));
	}
	if (err) {
		dq->dur->failed++;
		slot_confirm(b, si, ds->gen, m.id, err);
		fold(b, qid, SHMBUS_CTR_DROPPED, 1);
		chunk_drop(b, ref);
		return true;
	}
	dq->dur->written++;
	e = journal_find(dq->dur->j, m.id);
	if (e)
		e->user = (uint64_t)ref + 1;
	timer_add(b, qid, dq->gen, ref, now + delay_ns);
	server_want_tick();
	slot_confirm(b, si, ds->gen, m.id, 0);
	return true;
}
