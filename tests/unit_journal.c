// SPDX-License-Identifier: MIT
/*
 * unit_journal.c - the durable queues' journal (journal.c) on real files:
 * records survive close and reopen byte for byte with their state and
 * order; segments roll over, and housekeeping deletes only head segments
 * whose messages are all settled durably, copying a few pinned messages
 * forward first; recovery cuts torn tails, skips corrupt records, blocks,
 * headers and counts missing segments while keeping everything else; a
 * failed flush (a full tmpfs, a file size limit) leaves nothing of its
 * buffer behind and the journal usable; group commit reports what was
 * made durable; dedup keys outlive their messages for their window; and
 * a million records replay in about a second.
 */
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include "helpers.h"
#include "internal.h"
#include "journal.h"
#include "shmbusd.h"

#define WINDOW	(3600ull * 1000000000ull)

struct tj {
	char dir[64];		/* the test's own directory under /tmp */
	char jdir[128];		/* the journal in it */
	struct journal *j;
	struct journal_cfg cfg;
};

/* What a failed test leaves behind, for cleanup() to remove. */
static char left_dir[64], left_mnt[128];

static void tj_setup(struct tj *t, uint64_t seg_bytes)
{
	memset(t, 0, sizeof(*t));
	strcpy(t->dir, "/tmp/unit-journal-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	strcpy(left_dir, t->dir);
	snprintf(t->jdir, sizeof(t->jdir), "%s/q", t->dir);
	t->cfg.segment_bytes = seg_bytes;
	t->cfg.dedup_window_ns = WINDOW;
	t->cfg.name = "unit/q";
}

static void tj_open(struct tj *t)
{
	char why[256] = "";
	int err = journal_open(t->jdir, &t->cfg, &t->j, why, sizeof(why));

	if (err)
		fail_msg("journal_open: %s (%s)", strerror(-err), why);
}

static void tj_reopen(struct tj *t)
{
	journal_close(t->j);
	tj_open(t);
}

static void tj_teardown(struct tj *t)
{
	journal_close(t->j);
	t->j = NULL;
	assert_int_equal(journal_destroy(t->jdir), 0);
	assert_int_equal(rmdir(t->dir), 0);
	left_dir[0] = '\0';
}

static int rm_one(const char *path, const struct stat *st, int flag,
		  struct FTW *ftw)
{
	remove(path);
	return 0;
}

static struct rlimit fsize_saved;

/* After every test: a failed one's mount, files, and file size limit. */
static int cleanup(void **state)
{
	if (left_mnt[0])
		umount2(left_mnt, MNT_DETACH);
	if (left_dir[0])
		nftw(left_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	left_mnt[0] = left_dir[0] = '\0';
	if (fsize_saved.rlim_cur)
		setrlimit(RLIMIT_FSIZE, &fsize_saved);
	signal(SIGXFSZ, SIG_DFL);
	dlog_set_level(LOG_INFO_);
	return 0;
}

static struct journal_stats tj_stats(struct tj *t)
{
	struct journal_stats st;

	journal_stats(t->j, &st);
	return st;
}

/* ---- messages whose bytes follow from their id -------------------------- */

static uint32_t msg_len(uint64_t id)
{
	return 1 + (uint32_t)(id * 37 % 700);
}

static uint32_t msg_alen(uint64_t id)
{
	return id % 3 ? (uint32_t)(id % 29) : 0;
}

static void msg_bytes(uint8_t *p, uint64_t id, uint32_t len, uint32_t salt)
{
	uint32_t k;

	for (k = 0; k < len; k++)
		p[k] = (uint8_t)(id * 131 + k * 7 + salt);
}

/* Publish @id with a payload of @len bytes (0: msg_len(id)); its order. */
static uint64_t pub(struct tj *t, uint64_t id, uint32_t len)
{
	static uint8_t pay[JOURNAL_REC_MAX], attrs[64];
	struct jmsg m = {
		.id = id, .pub_rt = 1000 + id, .expires_rt = 5000 + id,
		.corr_id = id * 3, .prio = (uint32_t)(id % 7),
		.dl_reason = 2, .dl_count = 1,
		.len = len ? len : msg_len(id), .attr_len = msg_alen(id),
		.payload = pay, .attrs = attrs,
	};

	msg_bytes(pay, id, m.len, 0);
	msg_bytes(attrs, id, m.attr_len, 99);
	assert_int_equal(journal_pub(t->j, &m), 0);
	return m.order;
}

static void flush_ok(struct tj *t)
{
	assert_int_equal(journal_flush(t->j), 0);
}

/* Group-commit rounds until everything written is durable. */
static void sync_all(struct tj *t)
{
	struct jsync s;
	int rounds = 0;

	do {
		assert_true(rounds++ < 100);
		journal_sync_begin(t->j, &s);
		journal_sync_end(t->j, &s, journal_sync_run(&s));
	} while (journal_synced(t->j) < journal_written(t->j));
	assert_int_equal(journal_synced(t->j), journal_written(t->j));
}

/* The record size of message @id as published by pub(). */
static uint64_t rec_size(uint64_t id, uint32_t len)
{
	len = len ? len : msg_len(id);
	return 112 + ALIGN_UP(len, 8u) + ALIGN_UP(msg_alen(id), 8u);
}

/* ---- checking the live set ---------------------------------------------- */

struct expect {
	uint64_t n;		/* ids 1..n */
	bool live[4096];
	uint64_t order[4096];
	uint32_t dc[4096], mflags[4096];
	uint64_t due[4096];
	uint32_t len[4096];	/* 0: msg_len(id) */
	uint64_t seen;
	uint64_t last_order;
};

static void expect_init(struct expect *x, uint64_t n)
{
	uint64_t i;

	memset(x, 0, sizeof(*x));
	x->n = n;
	for (i = 1; i <= n; i++) {
		x->live[i] = true;
		x->order[i] = i;
	}
}

static int check_one(void *arg, const struct jent *e, const struct jmsg *m)
{
	struct expect *x = arg;
	uint64_t id = e->id;
	static uint8_t want[JOURNAL_REC_MAX];
	uint32_t len;

	assert_true(id >= 1 && id <= x->n);
	assert_true(x->live[id]);
	len = x->len[id] ? x->len[id] : msg_len(id);
	assert_int_equal(e->order, x->order[id]);
	assert_int_equal(m->order, x->order[id]);
	assert_true(e->order >= x->last_order);
	x->last_order = e->order;
	assert_int_equal(e->delivery_count, x->dc[id]);
	assert_int_equal(e->mflags, x->mflags[id]);
	assert_int_equal(e->due_rt, x->due[id]);
	assert_int_equal(m->delivery_count, x->dc[id]);
	assert_int_equal(m->pub_rt, 1000 + id);
	assert_int_equal(m->expires_rt, 5000 + id);
	assert_int_equal(e->pub_rt, 1000 + id);
	assert_int_equal(m->corr_id, id * 3);
	assert_int_equal(m->prio, id % 7);
	assert_int_equal(m->dl_reason, 2);
	assert_int_equal(m->dl_count, 1);
	assert_int_equal(m->len, len);
	assert_int_equal(m->attr_len, msg_alen(id));
	msg_bytes(want, id, len, 0);
	assert_memory_equal(m->payload, want, len);
	msg_bytes(want, id, m->attr_len, 99);
	if (m->attr_len)
		assert_memory_equal(m->attrs, want, m->attr_len);
	x->seen++;
	return 0;
}

/* The journal's live set is exactly @x's, in order, bytes and state. */
static void check_live(struct tj *t, struct expect *x)
{
	uint64_t i, want = 0, n = 0;
	struct jent *e;

	for (i = 1; i <= x->n; i++) {
		if (!x->live[i]) {
			assert_null(journal_find(t->j, i));
			continue;
		}
		want++;
		assert_non_null(journal_find(t->j, i));
	}
	for (e = journal_first(t->j); e; e = journal_next(t->j, e))
		n++;
	assert_int_equal(n, want);
	assert_int_equal(tj_stats(t).live, want);
	x->seen = 0;
	x->last_order = 0;
	assert_int_equal(journal_each_live(t->j, check_one, x), 0);
	assert_int_equal(x->seen, want);
}

static void settle(struct tj *t, struct expect *x, uint64_t id)
{
	assert_int_equal(journal_settle(t->j, id, 1), 0);
	x->live[id] = false;
}

/* ---- the segment files ---------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The segment files' first seqs, in order; returns how many. */
static int seg_list(struct tj *t, uint64_t *out, int max)
{
	char *names[256];
	struct dirent *de;
	int n = 0, i;
	DIR *d = opendir(t->jdir);

	assert_non_null(d);
	while ((de = readdir(d)))
		if (strlen(de->d_name) == 20 && strstr(de->d_name, ".seg")) {
			assert_true(n < 256);
			names[n++] = strdup(de->d_name);
		}
	closedir(d);
	qsort(names, (size_t)n, sizeof(*names), cmp_str);
	for (i = 0; i < n; i++) {
		if (i < max)
			out[i] = strtoull(names[i], NULL, 16);
		free(names[i]);
	}
	return n;
}

static void seg_path(struct tj *t, uint64_t first_seq, char *out, size_t len)
{
	snprintf(out, len, "%s/%016" PRIx64 ".seg", t->jdir, first_seq);
}

static off_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* The segment files' sizes on disk, added up. */
static uint64_t disk_bytes(struct tj *t)
{
	uint64_t seg[256], sum = 0;
	char path[160];
	int n = seg_list(t, seg, 256), i;

	for (i = 0; i < n; i++) {
		seg_path(t, seg[i], path, sizeof(path));
		sum += (uint64_t)file_size(path);
	}
	return sum;
}

static void poke(const char *path, off_t off, const void *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT, 0600);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, p, len, off), (ssize_t)len);
	close(fd);
}

static void flip_bit(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	uint8_t b;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x10;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

/* ---- tests ------------------------------------------------------------------- */

static void round_trip(void **state)
{
	static struct expect x;
	struct tj t;
	uint64_t i;

	tj_setup(&t, 0);
	tj_open(&t);
	expect_init(&x, 50);
	for (i = 1; i <= 50; i++)
		pub(&t, i, 0);
	/* the biggest message there may be, and an empty one */
	x.len[7] = JOURNAL_REC_MAX - 112 - ALIGN_UP(msg_alen(7), 8u);
	assert_int_equal(journal_settle(t.j, 7, 0), 0);
	x.live[7] = false;
	pub(&t, 60, 0);		/* beyond x: settled again below */
	assert_int_equal(journal_settle(t.j, 60, 0), 0);
	flush_ok(&t);
	{
		static uint8_t big[JOURNAL_REC_MAX];
		struct jmsg m = { .id = 7, .len = x.len[7] + 1,
			.attr_len = msg_alen(7), .payload = big, .attrs = big };

		/* a byte over: nothing buffered, nothing indexed */
		assert_int_equal(journal_pub(t.j, &m), -EMSGSIZE);
		m.len = UINT32_MAX;
		m.attr_len = UINT32_MAX;
		assert_int_equal(journal_pub(t.j, &m), -EMSGSIZE);
		assert_null(journal_find(t.j, 7));
	}
	for (i = 1; i <= 50; i += 5)
		settle(&t, &x, i);
	for (i = 3; i <= 50; i += 4) {
		if (!x.live[i])
			continue;
		assert_int_equal(journal_state(t.j, i, 2, 9000 + i, JM_LEASED), 0);
		x.dc[i] = 2;
		x.due[i] = 9000 + i;
		x.mflags[i] = JM_LEASED;
	}
	assert_int_equal(journal_settle(t.j, 1, 0), -ENOENT);
	assert_int_equal(journal_state(t.j, 1, 0, 0, 0), -ENOENT);
	assert_int_equal(journal_settle(t.j, 999, 0), -ENOENT);
	/* id 7 again, after its settle, as big as a message may be */
	{
		static uint8_t pay[JOURNAL_REC_MAX];
		uint8_t attrs[64];
		struct jmsg m = {
			.id = 7, .order = 7, .pub_rt = 1007, .expires_rt = 5007,
			.corr_id = 21, .dl_reason = 2, .dl_count = 1,
			.len = x.len[7], .attr_len = msg_alen(7),
			.payload = pay, .attrs = attrs,
		};

		msg_bytes(pay, 7, m.len, 0);
		msg_bytes(attrs, 7, m.attr_len, 99);
		assert_int_equal(journal_pub(t.j, &m), 0);
		x.live[7] = true;
	}
	flush_ok(&t);
	check_live(&t, &x);
	tj_reopen(&t);
	check_live(&t, &x);
	print_message("round trip: %" PRIu64 " live of 51, %" PRIu64
		      " records replayed, %" PRIu64 " bytes\n", tj_stats(&t).live,
		      tj_stats(&t).replayed, tj_stats(&t).bytes);
	assert_int_equal(tj_stats(&t).corrupt, 0);
	assert_int_equal(tj_stats(&t).torn_bytes, 0);
	assert_int_equal(tj_stats(&t).written, tj_stats(&t).bytes);
	assert_int_equal(tj_stats(&t).synced, tj_stats(&t).bytes);
	/* appends go on after the replayed ones */
	pub(&t, 51, 0);
	x.n = 51;
	x.live[51] = true;
	x.order[51] = tj_stats(&t).replayed + 1;
	flush_ok(&t);
	tj_reopen(&t);
	check_live(&t, &x);
	tj_teardown(&t);
}

struct recover {
	struct tj *t;
	struct expect *x;
	int stop_at;		/* stop after this many; 0: never */
	int n;
};

/* What the daemon does at recovery: drop some, mark the others leased. */
static int recover_one(void *arg, const struct jent *e, const struct jmsg *m)
{
	struct recover *r = arg;
	uint64_t id = e->id;

	assert_true(r->x->live[id]);
	if (id % 2) {
		assert_int_equal(journal_settle(r->t->j, id, 3), 0);
		r->x->live[id] = false;
	} else {
		assert_int_equal(journal_state(r->t->j, id, e->delivery_count + 1,
					       0, JM_LEASED), 0);
		r->x->dc[id]++;
		r->x->due[id] = 0;
		r->x->mflags[id] = JM_LEASED;
	}
	/* an append moves nothing it was given */
	assert_int_equal(m->id, id);
	return ++r->n == r->stop_at ? 42 : 0;
}

/* journal_each_live's fn settles or changes the entry it is on; a nonzero
 * return stops the walk. */
static void recovery_walk(void **state)
{
	static struct expect x;
	struct recover r = { 0 };
	struct tj t;
	uint64_t i;

	tj_setup(&t, 0);
	tj_open(&t);
	expect_init(&x, 40);
	for (i = 1; i <= 40; i++)
		pub(&t, i, 0);
	flush_ok(&t);
	/* these settles and PUBs only in the buffer */
	for (i = 31; i <= 40; i++)
		settle(&t, &x, i);
	x.n = 50;
	for (i = 41; i <= 50; i++) {
		x.order[i] = pub(&t, i, 0);
		x.live[i] = true;
	}
	r.t = &t;
	r.x = &x;
	r.stop_at = 35;
	assert_int_equal(journal_each_live(t.j, recover_one, &r), 42);
	assert_int_equal(r.n, 35);
	flush_ok(&t);
	tj_reopen(&t);
	check_live(&t, &x);
	print_message("recovery walk: stopped after 35, %" PRIu64 " live after "
		      "settling the odd ones\n", tj_stats(&t).live);
	tj_teardown(&t);
}

static int count_one(void *arg, const struct jent *e, const struct jmsg *m)
{
	uint64_t *seen = arg;

	(void)m;
	assert_int_equal(e->user, 0);
	seen[0]++;
	seen[1] += e->id;
	return 0;
}

/* journal_each_unplaced() visits, in order, only the entries whose user is
 * still 0 (what the daemon has not put into a chunk yet). */
static void unplaced_walk(void **state)
{
	uint64_t seen[2] = { 0 };
	struct tj t;

	(void)state;
	tj_setup(&t, 0);
	tj_open(&t);
	for (uint64_t i = 1; i <= 10; i++)
		pub(&t, i, 0);
	flush_ok(&t);
	for (uint64_t i = 2; i <= 10; i += 2)
		journal_find(t.j, i)->user = 100 + i;
	assert_int_equal(journal_each_unplaced(t.j, count_one, seen), 0);
	print_message("unplaced walk: %" PRIu64 " of 10 visited\n", seen[0]);
	assert_int_equal(seen[0], 5);
	assert_int_equal(seen[1], 1 + 3 + 5 + 7 + 9);
	tj_teardown(&t);
}

/* Orders: a PUB of a live id keeps the smaller order; explicit orders
 * sort in; a copy forward of a message whose first PUB is gone sorts in. */
static void order_copy_forward(void **state)
{
	static struct expect x;
	struct tj t;
	struct jmsg m;
	uint64_t i;

	tj_setup(&t, 0);
	tj_open(&t);
	expect_init(&x, 10);
	for (i = 1; i <= 8; i++)
		pub(&t, i, 0);
	flush_ok(&t);
	/* 9 and 10 go before 3 and after 5 */
	pub(&t, 9, 0);
	pub(&t, 10, 0);
	flush_ok(&t);
	x.order[9] = 9;
	x.order[10] = 10;
	{
		uint8_t pay[1024], a[64];

		msg_bytes(pay, 2, msg_len(2), 0);
		msg_bytes(a, 2, msg_alen(2), 99);
		/* id 2 again with a later order: keeps 2, takes the state */
		m = (struct jmsg){ .id = 2, .order = 100, .pub_rt = 1002,
			.expires_rt = 5002, .corr_id = 6, .prio = 2,
			.dl_reason = 2, .dl_count = 1, .delivery_count = 4,
			.due_rt = 77, .len = msg_len(2), .attr_len = msg_alen(2),
			.payload = pay, .attrs = a };
		assert_int_equal(journal_pub(t.j, &m), 0);
		x.dc[2] = 4;
		x.due[2] = 77;
		/* id 8 again with an earlier order: moves to 0.5 */
		msg_bytes(pay, 8, msg_len(8), 0);
		msg_bytes(a, 8, msg_alen(8), 99);
		m = (struct jmsg){ .id = 8, .order = 1, .pub_rt = 1008,
			.expires_rt = 5008, .corr_id = 24, .prio = 1,
			.dl_reason = 2, .dl_count = 1, .len = msg_len(8),
			.attr_len = msg_alen(8), .payload = pay, .attrs = a };
		assert_int_equal(journal_pub(t.j, &m), 0);
		x.order[8] = 1;
	}
	flush_ok(&t);
	assert_int_equal(journal_first(t.j)->id, 1);
	assert_int_equal(journal_next(t.j, journal_first(t.j))->id, 8);
	check_live(&t, &x);
	tj_reopen(&t);
	check_live(&t, &x);
	assert_int_equal(journal_first(t.j)->id, 1);
	assert_int_equal(journal_next(t.j, journal_first(t.j))->id, 8);
	assert_int_equal(tj_stats(&t).live, 10);
	print_message("order: id 8 re-journaled with order 1 sorts second, id 2 "
		      "keeps order 2 with delivery count 4\n");
	tj_teardown(&t);
}

/*
 * Rolling over and deleting: fully settled head segments go once what
 * settled them is synced, oldest first; a fully settled segment behind
 * one with a live message stays.
 */
static void roll_and_gc(void **state)
{
	static struct expect x;
	uint64_t seg[64], i;
	struct tj t;
	int n, n2;

	tj_setup(&t, JOURNAL_SEG_MIN);
	tj_open(&t);
	expect_init(&x, 400);
	for (i = 1; i <= 400; i++) {
		pub(&t, i, 1000);
		x.len[i] = 1000;
		if (i % 10 == 0)
			flush_ok(&t);
	}
	n = seg_list(&t, seg, 64);
	print_message("400 messages of 1000 bytes in %d segments of 64 KiB\n", n);
	assert_true(n >= 6);
	assert_int_equal(tj_stats(&t).segments, n);
	assert_int_equal(seg[0], 1);
	sync_all(&t);
	/* only PUBs: message i has seq i; settle segments 0 and 2 */
	for (i = seg[0]; i < seg[1]; i++)
		settle(&t, &x, i);
	for (i = seg[2]; i < seg[3]; i++)
		settle(&t, &x, i);
	flush_ok(&t);
	/* the PUBs are durable, the SETTLEs not yet */
	assert_int_equal(journal_gc(t.j, 0, 0), 0);
	assert_int_equal(seg_list(&t, seg, 64), n);
	sync_all(&t);
	assert_int_equal(journal_gc(t.j, 0, 0), 1);
	n2 = seg_list(&t, seg + 32, 32);
	assert_int_equal(n2, n - 1);
	assert_int_equal(seg[32], seg[1]);	/* segment 1 pins 2 */
	assert_int_equal(journal_gc(t.j, 0, 0), 0);
	for (i = seg[1]; i < seg[2]; i++)
		settle(&t, &x, i);
	flush_ok(&t);
	assert_int_equal(journal_gc(t.j, 0, 0), 0);
	sync_all(&t);
	assert_int_equal(journal_gc(t.j, 0, 0), 2);
	assert_int_equal(seg_list(&t, seg + 32, 32), n - 3);
	assert_int_equal(seg[32], seg[3]);
	assert_int_equal(tj_stats(&t).deleted_segments, 3);
	check_live(&t, &x);
	tj_reopen(&t);
	check_live(&t, &x);
	assert_int_equal(tj_stats(&t).missing, 0);
	assert_int_equal(tj_stats(&t).corrupt, 0);
	print_message("gc: 3 segments deleted in order, %" PRIu64 " live kept, "
		      "%" PRIu64 " records replayed\n", tj_stats(&t).live,
		      tj_stats(&t).replayed);
	/* everything settled: all but the active segment go */
	for (i = 1; i <= 400; i++)
		if (x.live[i])
			settle(&t, &x, i);
	flush_ok(&t);
	sync_all(&t);
	assert_int_equal(journal_gc(t.j, 0, 0), n - 4);
	assert_int_equal(seg_list(&t, seg, 64), 1);
	tj_reopen(&t);
	assert_int_equal(tj_stats(&t).live, 0);
	tj_teardown(&t);
}

/* A head segment pinned by one message: it is copied forward, then the
 * segment goes once the copy is synced; the copy keeps order and state. */
static void compaction(void **state)
{
	static struct expect x;
	uint64_t seg[64], i, w;
	struct tj t;
	int n;

	tj_setup(&t, JOURNAL_SEG_MIN);
	tj_open(&t);
	expect_init(&x, 300);
	for (i = 1; i <= 300; i++) {
		pub(&t, i, 1000);
		x.len[i] = 1000;
		if (i % 10 == 0)
			flush_ok(&t);
	}
	n = seg_list(&t, seg, 64);
	assert_true(n >= 5);
	for (i = seg[0]; i < seg[1]; i++)
		if (i != 5)
			settle(&t, &x, i);
	assert_int_equal(journal_state(t.j, 5, 3, 777, JM_LEASED | JM_CHECKSUM), 0);
	x.dc[5] = 3;
	x.due[5] = 777;
	x.mflags[5] = JM_LEASED | JM_CHECKSUM;
	flush_ok(&t);
	/* not synced: neither deleted nor compacted */
	assert_int_equal(journal_gc(t.j, 0, 1 << 20), 0);
	assert_int_equal(tj_stats(&t).compacted, 0);
	sync_all(&t);
	w = journal_written(t.j);
	assert_int_equal(journal_gc(t.j, 0, 1 << 20), 0);
	assert_int_equal(tj_stats(&t).compacted, 1);
	assert_true(journal_written(t.j) > w);	/* the copy, flushed */
	n = seg_list(&t, seg + 32, 32);	/* the copy may have rolled over */
	assert_int_equal(seg[32], seg[0]);	/* not synced: it stays */
	assert_int_equal(journal_gc(t.j, 0, 1 << 20), 0);
	sync_all(&t);
	assert_int_equal(journal_gc(t.j, 0, 1 << 20), 1);
	assert_int_equal(seg_list(&t, seg + 32, 32), n - 1);
	assert_int_equal(seg[32], seg[1]);
	assert_int_equal(journal_first(t.j)->id, 5);
	check_live(&t, &x);
	tj_reopen(&t);
	check_live(&t, &x);
	/* its first PUB is gone: the copy alone sorts it first */
	assert_int_equal(journal_first(t.j)->id, 5);
	assert_int_equal(journal_first(t.j)->order, 5);
	print_message("compaction: message 5 copied forward with its state, "
		      "segment %016" PRIx64 " deleted, still first in order\n",
		      seg[0]);

	/* a pinned message whose SETTLE is only buffered is not copied */
	for (i = seg[1]; i < seg[2]; i++)
		if (i != seg[1] + 1)
			settle(&t, &x, i);
	flush_ok(&t);
	sync_all(&t);
	settle(&t, &x, seg[1] + 1);
	assert_int_equal(journal_gc(t.j, 0, 1 << 20), 0);
	assert_int_equal(tj_stats(&t).compacted, 0);
	assert_null(journal_find(t.j, seg[1] + 1));
	flush_ok(&t);
	sync_all(&t);
	assert_int_equal(journal_gc(t.j, 0, 1 << 20), 1);
	tj_reopen(&t);
	check_live(&t, &x);
	seg[1] = seg[2];
	seg[2] = seg[3];
	n--;

	/* the next head segment: all live, so left alone */
	assert_int_equal(journal_gc(t.j, 0, 1 << 20), 0);
	assert_int_equal(tj_stats(&t).compacted, 0);	/* counts since open */
	/* two pinned, a budget of one byte: one message per call */
	for (i = seg[1]; i < seg[2]; i++)
		if (i != seg[1] + 2 && i != seg[1] + 4)
			settle(&t, &x, i);
	flush_ok(&t);
	sync_all(&t);
	assert_int_equal(journal_gc(t.j, 0, 1), 0);
	assert_int_equal(tj_stats(&t).compacted, 1);
	assert_int_equal(journal_gc(t.j, 0, 1), 0);
	assert_int_equal(tj_stats(&t).compacted, 2);
	assert_int_equal(journal_gc(t.j, 0, 1), 0);
	assert_int_equal(tj_stats(&t).compacted, 2);
	sync_all(&t);
	assert_int_equal(journal_gc(t.j, 0, 1), 1);
	assert_int_equal(seg_list(&t, seg + 32, 32), n - 2);
	tj_reopen(&t);
	check_live(&t, &x);
	{
		struct jent *e = journal_first(t.j);

		assert_int_equal(e->id, 5);
		e = journal_next(t.j, e);
		assert_int_equal(e->id, seg[1] + 2);
		e = journal_next(t.j, e);
		assert_int_equal(e->id, seg[1] + 4);
	}
	print_message("compaction with a budget of 1 byte: one message a call, "
		      "order %" PRIu64 ", %" PRIu64 " kept\n", seg[1] + 2,
		      seg[1] + 4);
	tj_teardown(&t);
}

/* 20 messages in one segment, closed. */
static void twenty(struct tj *t, struct expect *x)
{
	uint64_t i;

	tj_setup(t, 0);
	tj_open(t);
	expect_init(x, 20);
	for (i = 1; i <= 20; i++)
		pub(t, i, 0);
	flush_ok(t);
	journal_close(t->j);
	t->j = NULL;
}

static uint64_t rec_off(uint64_t id)
{
	uint64_t off = 64, i;

	for (i = 1; i < id; i++)
		off += rec_size(i, 0);
	return off;
}

static void torn_tail(void **state)
{
	static struct expect x;
	char path[160];
	struct tj t;
	off_t size;

	twenty(&t, &x);
	seg_path(&t, 1, path, sizeof(path));
	size = file_size(path);
	assert_int_equal(size, rec_off(21));
	/* cut in the middle of the last record */
	assert_int_equal(truncate(path, size - 50), 0);
	tj_open(&t);
	x.live[20] = false;
	check_live(&t, &x);
	assert_int_equal(tj_stats(&t).torn_bytes, rec_size(20, 0) - 50);
	assert_int_equal(tj_stats(&t).corrupt, 0);
	assert_int_equal(file_size(path), rec_off(20));
	print_message("torn record: %" PRIu64 " bytes cut, 19 live\n",
		      tj_stats(&t).torn_bytes);
	/* its seq is used again; the journal goes on */
	pub(&t, 20, 0);
	x.live[20] = true;
	flush_ok(&t);
	tj_reopen(&t);
	check_live(&t, &x);
	assert_int_equal(tj_stats(&t).torn_bytes, 0);
	assert_int_equal(tj_stats(&t).replayed, 20);
	journal_close(t.j);
	t.j = NULL;

	/* zeros after the last record: a tail the crash left unwritten */
	{
		static uint8_t zero[4096];

		poke(path, file_size(path), zero, sizeof(zero));
	}
	tj_open(&t);
	check_live(&t, &x);
	assert_int_equal(tj_stats(&t).torn_bytes, 4096);
	assert_int_equal(tj_stats(&t).corrupt, 0);
	assert_int_equal(file_size(path), rec_off(21));
	print_message("zero tail: 4096 bytes cut, 20 live\n");
	tj_teardown(&t);
}

static void flipped_bit(void **state)
{
	static struct expect x;
	char path[160];
	struct tj t;

	twenty(&t, &x);
	seg_path(&t, 1, path, sizeof(path));
	flip_bit(path, (off_t)rec_off(10) + 120);	/* its payload */
	tj_open(&t);
	x.live[10] = false;
	check_live(&t, &x);
	assert_int_equal(tj_stats(&t).corrupt, 1);
	assert_int_equal(tj_stats(&t).corrupt_bytes, rec_size(10, 0));
	assert_int_equal(tj_stats(&t).torn_bytes, 0);
	assert_int_equal(tj_stats(&t).replayed, 19);
	journal_close(t.j);
	t.j = NULL;
	/* a bit of a length field: the scan finds the next record */
	flip_bit(path, (off_t)rec_off(15) + 9);
	tj_open(&t);
	x.live[15] = false;
	check_live(&t, &x);
	assert_int_equal(tj_stats(&t).corrupt, 2);
	assert_int_equal(tj_stats(&t).corrupt_bytes,
			 rec_size(10, 0) + rec_size(15, 0));
	print_message("flipped bits: records 10 and 15 lost, %" PRIu64
		      " corrupt bytes, 18 live\n", tj_stats(&t).corrupt_bytes);
	tj_teardown(&t);
}

static void zero_block(void **state)
{
	static struct expect x;
	static uint8_t zero[4096];
	uint64_t at, first = 0, last = 0, i;
	char path[160];
	struct tj t;

	twenty(&t, &x);
	seg_path(&t, 1, path, sizeof(path));
	at = rec_off(5) + 48;
	poke(path, (off_t)at, zero, sizeof(zero));
	for (i = 1; i <= 20; i++) {
		uint64_t s = rec_off(i), e = s + rec_size(i, 0);

		if (e > at && s < at + sizeof(zero)) {
			x.live[i] = false;
			if (!first)
				first = i;
			last = i;
		}
	}
	assert_true(last < 20);
	tj_open(&t);
	check_live(&t, &x);
	assert_int_equal(tj_stats(&t).corrupt, 1);
	assert_int_equal(tj_stats(&t).corrupt_bytes,
			 rec_off(last + 1) - rec_off(first));
	assert_int_equal(tj_stats(&t).torn_bytes, 0);
	print_message("zero block: records %" PRIu64 "..%" PRIu64 " lost (%" PRIu64
		      " bytes), %" PRIu64 " live\n", first, last,
		      tj_stats(&t).corrupt_bytes, tj_stats(&t).live);
	tj_teardown(&t);
}

/* Many segments of 64 KiB, closed; returns how many (first seqs in @seg). */
static int segments(struct tj *t, struct expect *x, uint64_t *seg)
{
	uint64_t i;

	tj_setup(t, JOURNAL_SEG_MIN);
	tj_open(t);
	expect_init(x, 300);
	for (i = 1; i <= 300; i++) {
		pub(t, i, 1000);
		x->len[i] = 1000;
		if (i % 10 == 0)
			flush_ok(t);
	}
	journal_close(t->j);
	t->j = NULL;
	return seg_list(t, seg, 64);
}

static void missing_segment(void **state)
{
	static struct expect x;
	char path[160];
	uint64_t seg[64], i;
	struct tj t;
	int n;

	n = segments(&t, &x, seg);
	assert_true(n >= 4);
	seg_path(&t, seg[1], path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	for (i = seg[1]; i < seg[2]; i++)
		x.live[i] = false;
	tj_open(&t);
	check_live(&t, &x);
	assert_int_equal(tj_stats(&t).missing, 1);
	assert_int_equal(tj_stats(&t).corrupt, 0);
	assert_int_equal(tj_stats(&t).segments, n - 1);
	print_message("missing segment: seqs %" PRIu64 "..%" PRIu64
		      " gone, %" PRIu64 " live kept\n", seg[1], seg[2] - 1,
		      tj_stats(&t).live);
	tj_teardown(&t);
}

static void bad_header(void **state)
{
	static struct expect x;
	char path[160];
	uint64_t seg[64], i;
	struct tj t;
	off_t size;
	int n;

	n = segments(&t, &x, seg);
	seg_path(&t, seg[2], path, sizeof(path));
	size = file_size(path);
	flip_bit(path, 30);	/* "created": only the crc tells */
	for (i = seg[2]; i < seg[3]; i++)
		x.live[i] = false;
	tj_open(&t);
	check_live(&t, &x);
	assert_int_equal(tj_stats(&t).corrupt, 1);
	assert_int_equal(tj_stats(&t).corrupt_bytes, size);
	assert_int_equal(tj_stats(&t).missing, 1);	/* what it held */
	assert_int_equal(tj_stats(&t).segments, n);
	print_message("bad header: segment %016" PRIx64 " (%lld bytes) skipped, "
		      "%" PRIu64 " live kept\n", seg[2], (long long)size,
		      tj_stats(&t).live);
	journal_close(t.j);
	t.j = NULL;
	/* a last segment shorter than its header: a torn creation */
	seg_path(&t, 301, path, sizeof(path));
	poke(path, 0, "shmbusJS\1\0\0\0", 12);
	tj_open(&t);
	assert_int_equal(tj_stats(&t).torn_bytes, 12);
	assert_int_equal(tj_stats(&t).segments, n);
	assert_int_equal(access(path, F_OK), -1);
	pub(&t, 301, 1000);
	x.n = 301;
	x.live[301] = true;
	x.len[301] = 1000;
	x.order[301] = 301;
	flush_ok(&t);
	tj_reopen(&t);
	check_live(&t, &x);
	print_message("torn creation: 12 bytes removed, appends go on\n");
	tj_teardown(&t);
}

/* Fill until a flush fails; the failed buffer: new ids 1000+, a settle, a
 * state change. Nothing of it remains, and a later flush works. */
static void flush_fails(struct tj *t, int want_err, void (*free_space)(void *),
			void *arg)
{
	static struct expect x;
	uint64_t id = 1, w, bytes, i;
	struct journal_stats st;
	int err;

	expect_init(&x, 4000);
	for (i = 1; i <= 4000; i++)
		x.live[i] = false;
	for (;;) {
		uint64_t first = id;

		assert_true(id + 8 < 4000);
		w = journal_written(t->j);
		bytes = tj_stats(t).bytes;
		for (i = 0; i < 8; i++, id++) {
			x.order[id] = pub(t, id, 3000);
			x.len[id] = 3000;
		}
		if (first > 8) {
			assert_int_equal(journal_settle(t->j, first - 8, 0), 0);
			assert_int_equal(journal_state(t->j, first - 7, 9, 99, 0), 0);
		}
		err = journal_flush(t->j);
		if (err)
			break;
		for (i = first; i < id; i++)
			x.live[i] = true;
		if (first > 8) {
			x.live[first - 8] = false;
			x.dc[first - 7] = 9;
			x.due[first - 7] = 99;
		}
	}
	assert_int_equal(err, want_err);
	st = tj_stats(t);
	print_message("flush failed (%s) after %" PRIu64 " bytes in %u segments\n",
		      strerror(-err), w, st.segments);
	assert_int_equal(journal_written(t->j), w);
	assert_int_equal(st.bytes, bytes);
	assert_int_equal(disk_bytes(t), bytes);	/* the partial write is cut */
	check_live(t, &x);
	assert_null(journal_find(t->j, id - 1));
	free_space(arg);
	/* the same again: now it goes */
	id -= 8;
	for (i = 0; i < 8; i++, id++) {
		x.order[id] = pub(t, id, 3000);
		x.live[id] = true;
	}
	assert_int_equal(journal_flush(t->j), 0);
	assert_true(journal_written(t->j) > w);
	tj_reopen(t);
	check_live(t, &x);
	assert_int_equal(tj_stats(t).corrupt, 0);
	assert_int_equal(tj_stats(t).torn_bytes, 0);
	print_message("after freeing space: flushed, %" PRIu64 " live after "
		      "reopen\n", tj_stats(t).live);
}

static void unlink_file(void *path)
{
	assert_int_equal(unlink(path), 0);
}

static void flush_enospc(void **state)
{
	char mnt[96], filler[128];
	static uint8_t junk[256 << 10];
	struct tj t;
	int fd;

	tj_setup(&t, JOURNAL_SEG_MIN * 4);
	snprintf(mnt, sizeof(mnt), "%s/mnt", t.dir);
	assert_int_equal(mkdir(mnt, 0700), 0);
	if (mount("unit-journal", mnt, "tmpfs", 0, "size=1m,mode=0700") < 0) {
		int e = errno;

		rmdir(mnt);
		rmdir(t.dir);
		SKIP_OR_FAIL("cannot mount a tmpfs: %s", strerror(e));
	}
	strcpy(left_mnt, mnt);
	snprintf(t.jdir, sizeof(t.jdir), "%s/q", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	fd = open(filler, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	tj_open(&t);
	flush_fails(&t, -ENOSPC, unlink_file, filler);
	journal_close(t.j);
	t.j = NULL;
	assert_int_equal(journal_destroy(t.jdir), 0);
	assert_int_equal(umount(mnt), 0);
	left_mnt[0] = '\0';
	assert_int_equal(rmdir(mnt), 0);
	assert_int_equal(rmdir(t.dir), 0);
	left_dir[0] = '\0';
}

static void raise_fsize(void *arg)
{
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &fsize_saved), 0);
}

static void flush_efbig(void **state)
{
	struct rlimit rl;
	struct tj t;

	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &fsize_saved), 0);
	tj_setup(&t, 0);
	tj_open(&t);
	/* not a multiple of a buffer: the failing write is partly done */
	rl.rlim_cur = 200000 + 17;
	rl.rlim_max = fsize_saved.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &rl), 0);
	flush_fails(&t, -EFBIG, raise_fsize, NULL);
	tj_teardown(&t);
}


static void group_commit(void **state)
{
	struct jsync s, s2;
	uint64_t i, w;
	unsigned n2;
	struct tj t;

	tj_setup(&t, JOURNAL_SEG_MIN);
	tj_open(&t);
	assert_int_equal(journal_synced(t.j), 0);
	pub(&t, 1, 100);
	flush_ok(&t);
	w = journal_written(t.j);
	assert_int_equal(w, 64 + rec_size(1, 100));
	assert_int_equal(journal_synced(t.j), 0);
	journal_sync_begin(t.j, &s);
	assert_int_equal(s.nfds, 1);
	assert_true(s.dirfd >= 0);	/* a new segment: its name too */
	assert_int_equal(s.pos, w);
	/* the loop goes on while the sync thread works */
	pub(&t, 2, 100);
	flush_ok(&t);
	assert_int_equal(journal_sync_run(&s), 0);
	journal_sync_end(t.j, &s, 0);
	assert_int_equal(journal_synced(t.j), w);
	assert_true(journal_written(t.j) > w);
	journal_sync_begin(t.j, &s);
	assert_int_equal(s.nfds, 1);
	assert_int_equal(s.dirfd, -1);	/* the name is durable already */
	assert_int_equal(s.pos, journal_written(t.j));
	journal_sync_end(t.j, &s, journal_sync_run(&s));
	assert_int_equal(journal_synced(t.j), journal_written(t.j));
	/* nothing new: an empty round */
	journal_sync_begin(t.j, &s);
	assert_int_equal(s.nfds, 0);
	assert_int_equal(s.pos, journal_synced(t.j));
	journal_sync_end(t.j, &s, journal_sync_run(&s));
	/* 12 segments unsynced: two rounds */
	for (i = 3; i < 3 + 12 * 60; i++) {
		pub(&t, i, 1000);
		if (i % 10 == 0)
			flush_ok(&t);
	}
	flush_ok(&t);
	journal_sync_begin(t.j, &s);
	assert_int_equal(s.nfds, JSYNC_FDS);
	assert_true(s.dirfd >= 0);
	assert_true(s.pos < journal_written(t.j));
	journal_sync_end(t.j, &s, journal_sync_run(&s));
	assert_int_equal(journal_synced(t.j), s.pos);
	journal_sync_begin(t.j, &s2);
	n2 = s2.nfds;
	assert_true(n2 >= 4);
	assert_int_equal(s2.pos, journal_written(t.j));
	journal_sync_end(t.j, &s2, journal_sync_run(&s2));
	assert_int_equal(journal_synced(t.j), journal_written(t.j));
	print_message("group commit: %u segments in rounds of %d and %u, "
		      "synced %" PRIu64 " bytes\n", tj_stats(&t).segments,
		      JSYNC_FDS, n2, journal_synced(t.j));
	/* a failed round is the last: synced stays, appends fail */
	pub(&t, 5000, 100);
	flush_ok(&t);
	w = journal_synced(t.j);
	journal_sync_begin(t.j, &s);
	assert_int_equal(s.nfds, 1);
	journal_sync_end(t.j, &s, -EIO);
	assert_int_equal(journal_synced(t.j), w);
	journal_sync_begin(t.j, &s);
	assert_int_equal(s.nfds, 0);
	assert_int_equal(s.pos, w);
	journal_sync_end(t.j, &s, journal_sync_run(&s));
	assert_int_equal(journal_synced(t.j), w);
	pub(&t, 5001, 100);
	assert_int_equal(journal_flush(t.j), -EIO);
	assert_null(journal_find(t.j, 5001));
	print_message("failed sync: synced stays at %" PRIu64 ", flush fails "
		      "with EIO\n", w);
	tj_teardown(&t);
}

/* The sync thread of the daemon: rounds handed over through pipes. */
static int to_sync[2], from_sync[2];

static void *sync_thread(void *arg)
{
	struct jsync *s;

	while (read(to_sync[0], &s, sizeof(s)) == sizeof(s)) {
		int err = journal_sync_run(s);

		assert_int_equal(write(from_sync[1], &err, sizeof(err)),
				 (ssize_t)sizeof(err));
	}
	return NULL;
}

/* Appends go on while another thread syncs (the thread sanitizer build
 * sees both sides). */
static void sync_in_thread(void **state)
{
	static struct expect x;
	struct jsync s, *sp = &s;
	uint64_t i, rounds = 0, last = 0;
	bool busy = false;
	pthread_t th;
	struct tj t;
	int err;

	tj_setup(&t, JOURNAL_SEG_MIN);
	tj_open(&t);
	assert_int_equal(pipe2(to_sync, O_CLOEXEC), 0);
	assert_int_equal(pipe2(from_sync, O_CLOEXEC | O_NONBLOCK), 0);
	assert_int_equal(pthread_create(&th, NULL, sync_thread, NULL), 0);
	expect_init(&x, 2000);
	for (i = 1; i <= 2000; i++) {
		x.order[i] = pub(&t, i, 500);
		x.len[i] = 500;
		/* all but a few settled: compaction moves those */
		if (i > 50 && (i - 50) % 97)
			settle(&t, &x, i - 50);
		if (i % 10)
			continue;
		flush_ok(&t);
		/* a loop that waits a little for events: rounds complete */
		if (busy) {
			struct pollfd pfd = { .fd = from_sync[0], .events = POLLIN };

			poll(&pfd, 1, 2);
		}
		if (busy && read(from_sync[0], &err, sizeof(err)) == sizeof(err)) {
			journal_sync_end(t.j, &s, err);
			assert_int_equal(err, 0);
			assert_true(journal_synced(t.j) >= last);
			assert_true(journal_synced(t.j) <= journal_written(t.j));
			last = journal_synced(t.j);
			busy = false;
			rounds++;
		}
		if (!busy) {
			journal_sync_begin(t.j, &s);
			assert_int_equal(write(to_sync[1], &sp, sizeof(sp)),
					 (ssize_t)sizeof(sp));
			busy = true;
		}
		assert_true(journal_gc(t.j, 0, 1 << 16) >= 0);
	}
	close(to_sync[1]);
	assert_int_equal(pthread_join(th, NULL), 0);
	if (busy) {
		assert_int_equal(read(from_sync[0], &err, sizeof(err)),
				 (ssize_t)sizeof(err));
		journal_sync_end(t.j, &s, err);
	}
	close(to_sync[0]);
	close(from_sync[0]);
	close(from_sync[1]);
	sync_all(&t);
	assert_true(journal_gc(t.j, 0, 0) >= 0);
	print_message("sync thread: %" PRIu64 " rounds beside 2000 PUBs, %" PRIu64
		      " segments deleted, %" PRIu64 " messages copied forward on "
		      "the way\n", rounds, tj_stats(&t).deleted_segments,
		      tj_stats(&t).compacted);
	assert_true(tj_stats(&t).deleted_segments > 0);
	check_live(&t, &x);
	tj_reopen(&t);
	check_live(&t, &x);
	tj_teardown(&t);
}

struct keys {
	int n;
	uint64_t key[16], end[16];
};

static void key_fn(void *arg, uint64_t key, uint64_t end)
{
	struct keys *k = arg;

	assert_true(k->n < 16);
	k->key[k->n] = key;
	k->end[k->n++] = end;
}

static void dedup_keys(void **state)
{
	uint8_t pay[8] = "payload";
	struct keys k;
	struct tj t;
	uint64_t i;

	tj_setup(&t, JOURNAL_SEG_MIN);
	tj_open(&t);
	for (i = 1; i <= 4; i++) {
		struct jmsg m = { .id = i, .pub_rt = 1000 * i, .len = 8,
			.payload = pay, .dedup_key = i == 4 ? 0 : 0xd0 + i };

		assert_int_equal(journal_pub(t.j, &m), 0);
	}
	assert_int_equal(journal_settle(t.j, 1, 0), 0);
	assert_int_equal(journal_settle(t.j, 2, 0), 0);
	/* in the buffer only: not yet a key the journal vouches for */
	memset(&k, 0, sizeof(k));
	journal_each_key(t.j, 0, key_fn, &k);
	assert_int_equal(k.n, 0);
	flush_ok(&t);
	memset(&k, 0, sizeof(k));
	journal_each_key(t.j, 0, key_fn, &k);
	assert_int_equal(k.n, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(k.key[i], 0xd1 + i);
		assert_int_equal(k.end[i], 1000 * (i + 1) + WINDOW);
	}
	tj_reopen(&t);
	memset(&k, 0, sizeof(k));
	journal_each_key(t.j, 2500 + WINDOW, key_fn, &k);
	assert_int_equal(k.n, 1);	/* 1 and 2 are out of the window */
	assert_int_equal(k.key[0], 0xd3);
	/* the segment of settled keyed messages stays for the window */
	assert_int_equal(journal_settle(t.j, 3, 0), 0);
	assert_int_equal(journal_settle(t.j, 4, 0), 0);
	for (i = 5; i <= 80; i++) {
		pub(&t, i, 1000);
		assert_int_equal(journal_settle(t.j, i, 0), 0);
		flush_ok(&t);
	}
	sync_all(&t);
	assert_true(tj_stats(&t).segments >= 2);
	assert_int_equal(journal_gc(t.j, 3000 + WINDOW - 1, 0), 0);
	assert_int_equal(journal_gc(t.j, 3000 + WINDOW, 0), 1);
	memset(&k, 0, sizeof(k));
	tj_reopen(&t);
	journal_each_key(t.j, 0, key_fn, &k);
	assert_int_equal(k.n, 0);	/* their segment is gone */
	print_message("dedup keys: 3 kept through settle and reopen, their "
		      "segment deleted at the end of the window\n");
	tj_teardown(&t);
}

static void destroy(void **state)
{
	char conf[160];
	struct tj t;
	int fd;

	tj_setup(&t, 0);
	tj_open(&t);
	pub(&t, 1, 0);
	flush_ok(&t);
	journal_close(t.j);
	t.j = NULL;
	snprintf(conf, sizeof(conf), "%s/queue.conf", t.jdir);
	fd = open(conf, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	/* another file does not disturb the replay */
	tj_open(&t);
	assert_int_equal(tj_stats(&t).live, 1);
	assert_int_equal(tj_stats(&t).corrupt, 0);
	journal_close(t.j);
	t.j = NULL;
	assert_int_equal(journal_destroy(t.jdir), 0);
	assert_int_equal(access(t.jdir, F_OK), -1);
	assert_int_equal(journal_destroy(t.jdir), 0);	/* gone already */
	assert_int_equal(rmdir(t.dir), 0);
	left_dir[0] = '\0';
}

/* A PUB whose lengths would wrap in 32 bits, with a good crc: corrupt. */
static void crafted_lengths(void **state)
{
	static struct expect x;
	uint8_t rec[24 + 88];
	char path[160];
	uint32_t crc;
	struct tj t;
	off_t at;

	twenty(&t, &x);
	seg_path(&t, 1, path, sizeof(path));
	at = (off_t)rec_off(4);
	{
		int fd = open(path, O_RDWR);

		assert_true(fd >= 0);
		assert_int_equal(pread(fd, rec, sizeof(rec), at), (ssize_t)sizeof(rec));
		close(fd);
	}
	/* len 0xfffffff9 and attr_len 0: ALIGN8 wraps to 0 in 32 bits,
	 * which makes the record's length look right */
	rec[100] = 0xf9, rec[101] = rec[102] = rec[103] = 0xff;
	memset(rec + 104, 0, 4);
	{
		uint32_t want = 112 + ALIGN_UP(msg_alen(4), 8u);
		int fd = open(path, O_RDWR);
		uint8_t *whole = malloc(want);

		assert_true(fd >= 0 && whole);
		/* shrink the record in place: what follows it is skipped */
		assert_int_equal(pread(fd, whole, want, at), (ssize_t)want);
		memcpy(whole, rec, sizeof(rec));
		whole[8] = (uint8_t)want, whole[9] = (uint8_t)(want >> 8);
		whole[10] = whole[11] = 0;
		crc = crc32c(0, whole + 8, want - 8);
		memcpy(whole + 4, &crc, 4);
		assert_int_equal(pwrite(fd, whole, want, at), (ssize_t)want);
		free(whole);
		close(fd);
	}
	tj_open(&t);
	x.live[4] = false;
	check_live(&t, &x);
	assert_int_equal(tj_stats(&t).corrupt, 1);
	assert_int_equal(tj_stats(&t).corrupt_bytes, rec_size(4, 0));
	print_message("PUB with a payload length of 0xfffffff9: skipped, 19 live\n");
	tj_teardown(&t);
}

static int read_all(void *arg, const struct jent *e, const struct jmsg *m)
{
	uint64_t *sum = arg;
	const uint8_t *p = m->payload, *a = m->attrs;
	uint32_t i;

	for (i = 0; i < m->len; i++)
		*sum += p[i];
	for (i = 0; i < m->attr_len; i++)
		*sum += a[i];
	return 0;
}

/*
 * Damage of every kind to a journal of a few segments, many times over
 * (bits flipped, ranges zeroed or filled with junk, files cut or
 * removed): open always succeeds, never reads out of bounds (the
 * sanitizer builds), and keeps at most what was there.
 */
static void random_damage(void **state)
{
	static uint8_t *orig[64];
	static size_t olen[64];
	uint64_t seg[64], i, max_live = 0, sum = 0, min_live = UINT64_MAX;
	unsigned seed = 12345, rounds = (unsigned)t_scaled(300), r;
	char path[160];
	struct tj t;
	int n, k, fd;

	tj_setup(&t, JOURNAL_SEG_MIN);
	tj_open(&t);
	for (i = 1; i <= 300; i++) {
		pub(&t, i, 0);
		if (i % 4 == 0)
			assert_int_equal(journal_settle(t.j, i - 2, 0), 0);
		if (i % 5 == 0)
			assert_int_equal(journal_state(t.j, i - 1, 1, i, JM_LEASED), 0);
		if (i % 7 == 0)
			flush_ok(&t);
	}
	flush_ok(&t);
	journal_close(t.j);
	t.j = NULL;
	n = seg_list(&t, seg, 64);
	assert_true(n >= 2);
	for (k = 0; k < n; k++) {
		seg_path(&t, seg[k], path, sizeof(path));
		olen[k] = (size_t)file_size(path);
		orig[k] = malloc(olen[k]);
		fd = open(path, O_RDONLY);
		assert_int_equal(read(fd, orig[k], olen[k]), (ssize_t)olen[k]);
		close(fd);
	}
	srand(seed);
	dlog_set_level(LOG_ERR_);	/* hundreds of findings: the counts say it */
	for (r = 0; r < rounds; r++) {
		int hits = 1 + rand() % 4, h;

		for (k = 0; k < n; k++) {
			seg_path(&t, seg[k], path, sizeof(path));
			fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			assert_int_equal(write(fd, orig[k], olen[k]), (ssize_t)olen[k]);
			close(fd);
		}
		for (h = 0; h < hits; h++) {
			uint8_t junk[4096];
			size_t off, len;

			k = rand() % n;
			seg_path(&t, seg[k], path, sizeof(path));
			if (access(path, F_OK))
				continue;
			off = (size_t)rand() % olen[k];
			len = 1 + (size_t)rand() % sizeof(junk);
			switch (rand() % 5) {
			case 0:
				flip_bit(path, (off_t)off);
				break;
			case 1:
				memset(junk, 0, len);
				poke(path, (off_t)off, junk, len);
				break;
			case 2:
				for (i = 0; i < len; i++)
					junk[i] = (uint8_t)rand();
				poke(path, (off_t)off, junk, len);
				break;
			case 3:
				assert_int_equal(truncate(path, (off_t)off), 0);
				break;
			case 4:
				unlink(path);
				break;
			}
		}
		tj_open(&t);
		assert_int_equal(journal_each_live(t.j, read_all, &sum), 0);
		if (tj_stats(&t).live > max_live)
			max_live = tj_stats(&t).live;
		if (tj_stats(&t).live < min_live)
			min_live = tj_stats(&t).live;
		journal_close(t.j);
		t.j = NULL;
	}
	dlog_set_level(LOG_INFO_);
	for (k = 0; k < n; k++)
		free(orig[k]);
	/* a lost SETTLE brings its message back: at most all 300 */
	assert_true(max_live <= 300);
	print_message("random damage: %u rounds (seed %u) over %d segments, "
		      "live between %" PRIu64 " and %" PRIu64 "\n", rounds, seed,
		      n, min_live, max_live);
	tj_open(&t);
	tj_teardown(&t);
}

/* A million records: 600k PUBs, 400k of them settled. */
static void million(void **state)
{
	long n = t_scaled(1000000), pubs = n * 3 / 5, i;
	uint8_t pay[32] = "a message of thirty-two bytes..";
	int64_t t0;
	struct tj t;

	tj_setup(&t, 0);
	tj_open(&t);
	t0 = t_now_ns();
	/* two of three settled, 100 messages later */
	for (i = 1; i <= pubs + 100; i++) {
		struct jmsg m = { .id = (uint64_t)i, .pub_rt = (uint64_t)i,
			.len = sizeof(pay), .payload = pay };

		if (i <= pubs)
			assert_int_equal(journal_pub(t.j, &m), 0);
		if (i > 100 && (i - 100) % 3)
			assert_int_equal(journal_settle(t.j, (uint64_t)(i - 100), 0), 0);
		if (i % 1000 == 0)
			flush_ok(&t);
	}
	flush_ok(&t);
	print_message("wrote %" PRIu64 " MiB in %.2f s\n",
		      tj_stats(&t).bytes >> 20, (t_now_ns() - t0) / 1e9);
	tj_reopen(&t);
	print_message("replayed %" PRIu64 " records (%" PRIu64 " MiB), %" PRIu64
		      " live, in %.3f s (files in the page cache)\n",
		      tj_stats(&t).replayed, tj_stats(&t).bytes >> 20,
		      tj_stats(&t).live, tj_stats(&t).open_ns / 1e9);
	/* again with the files out of the page cache: read from the disk */
	journal_close(t.j);
	t.j = NULL;
	{
		uint64_t seg[16];
		char path[160];
		int k, nseg = seg_list(&t, seg, 16), fd;

		for (k = 0; k < nseg && k < 16; k++) {
			seg_path(&t, seg[k], path, sizeof(path));
			fd = open(path, O_RDONLY);
			assert_true(fd >= 0);
			assert_int_equal(fdatasync(fd), 0);
			assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
			close(fd);
		}
	}
	tj_open(&t);
	print_message("replayed %" PRIu64 " records, %" PRIu64 " live, in %.3f s "
		      "(files dropped from the page cache first)\n",
		      tj_stats(&t).replayed, tj_stats(&t).live,
		      tj_stats(&t).open_ns / 1e9);
	assert_true(tj_stats(&t).open_ns < 20000000000ull);
	assert_int_equal(tj_stats(&t).live, pubs / 3);
	assert_int_equal(tj_stats(&t).replayed, pubs + (pubs - pubs / 3));
	assert_int_equal(tj_stats(&t).corrupt, 0);
	{
		struct jent *e = journal_first(t.j);

		assert_int_equal(e->id, 3);
		assert_int_equal(journal_next(t.j, e)->id, 6);
	}
	tj_teardown(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(round_trip, cleanup),
		cmocka_unit_test_teardown(order_copy_forward, cleanup),
		cmocka_unit_test_teardown(recovery_walk, cleanup),
		cmocka_unit_test_teardown(unplaced_walk, cleanup),
		cmocka_unit_test_teardown(roll_and_gc, cleanup),
		cmocka_unit_test_teardown(compaction, cleanup),
		cmocka_unit_test_teardown(torn_tail, cleanup),
		cmocka_unit_test_teardown(flipped_bit, cleanup),
		cmocka_unit_test_teardown(zero_block, cleanup),
		cmocka_unit_test_teardown(missing_segment, cleanup),
		cmocka_unit_test_teardown(bad_header, cleanup),
		cmocka_unit_test_teardown(crafted_lengths, cleanup),
		cmocka_unit_test_teardown(random_damage, cleanup),
		cmocka_unit_test_teardown(flush_enospc, cleanup),
		cmocka_unit_test_teardown(flush_efbig, cleanup),
		cmocka_unit_test_teardown(group_commit, cleanup),
		cmocka_unit_test_teardown(sync_in_thread, cleanup),
		cmocka_unit_test_teardown(dedup_keys, cleanup),
		cmocka_unit_test_teardown(destroy, cleanup),
		cmocka_unit_test_teardown(million, cleanup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
