// SPDX-License-Identifier: MIT
/*
 * journal.c - the write-ahead journal of a durable queue; journal.h has
 * the on-disk format and the API.
 *
 * In memory: the segments, oldest first; the index of live messages, a
 * hash by id and a list in queue order; and the append buffer with one
 * undo entry per buffered record.
 *
 * Appends change the index at once (the daemon asks journal_find() right
 * after journal_pub(), and journal_settle() must know what is live) but
 * touch the segments' accounting - which segment holds which live PUB,
 * how many, up to where what released them reaches - only when the flush
 * has written them. A failed flush walks the undo entries backwards and
 * the index is what it was before the buffer; the segments never saw it.
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shmbusd.h"
#include "journal.h"

#define REC_MAGIC	0x524a4253u
static const char seg_magic[8] = "shmbusJS";

/* record header and body offsets (journal.h) */
enum {
	R_MAGIC = 0, R_CRC = 4, R_LEN = 8, R_TYPE = 12, R_FLAGS = 14,
	R_SEQ = 16, R_ID = 24,
	P_ORDER = 32, P_PUB = 40, P_EXP = 48, P_DUE = 56, P_CORR = 64,
	P_DEDUP = 72, P_DC = 80, P_MFLAGS = 84, P_PRIO = 88, P_DLR = 92,
	P_DLC = 96, P_LEN = 100, P_ALEN = 104, P_PAD = 108, P_DATA = 112,
	S_REASON = 32, S_PAD = 36, SETTLE_LEN = 40,
	T_DUE = 32, T_DC = 40, T_MFLAGS = 44, STATE_LEN = 48,
	H_VERSION = 8, H_SIZE = 12, H_FIRST = 16, H_CREATED = 24, H_CRC = 60,
};

struct jseg;

/* A live message: the jent the caller sees, and where its PUB is. */
struct jnode {
	struct jent e;
	struct jnode *hnext;		/* hash chain */
	struct jnode *prev, *next;	/* queue order */
	struct jnode *sprev, *snext;	/* the PUBs placed in seg */
	struct jseg *seg;	/* NULL: its only PUB is still in the buffer */
	uint64_t off;		/* in seg, or in the buffer when seg is NULL */
	uint32_t rlen;
	bool settled;		/* by a buffered SETTLE: out of the index */
};

struct jseg {
	struct jseg *prev, *next;
	uint64_t first_seq;	/* its name */
	uint64_t pos;		/* journal position of its byte 0 */
	uint64_t size;		/* bytes of it that count */
	uint64_t live, live_bytes;	/* PUBs placed in it */
	uint64_t release_pos;	/* end of the last record that unplaced one */
	uint64_t dedup_until;	/* its dedup keys' windows end */
	struct jnode *nodes;
	int fd;
	bool bad;		/* header did not validate: never read */
	bool dir_synced;	/* its directory entry is durable */
};

/* One buffered record: how to make its index change count, or undo it. */
struct jop {
	uint16_t type;
	bool fresh;		/* PUB of an id that was not live */
	struct jnode *n;
	uint64_t off;		/* in the buffer */
	uint32_t rlen;
	struct jent old;	/* PUB of a live id, STATE: the entry before */
};

struct dkey {
	uint64_t key, end;
};

struct journal {
	int dirfd;
	char *name;
	uint64_t seg_bytes, dedup_window;

	struct jseg *segs, *last;	/* oldest first */
	struct jseg *active;		/* appended to; NULL: roll first */

	struct jnode **htab;
	uint64_t hmask, nlive;
	unsigned hbits;			/* hmask + 1 == 1 << hbits */
	struct jnode *head, *tail, *finger;

	uint8_t *buf;
	size_t blen, bcap;
	struct jop *ops;
	size_t nops, cops;
	uint64_t buf_seq;	/* seq of the buffer's first record */
	uint64_t next_seq;

	struct dkey *keys;
	size_t nkeys, ckeys;

	uint8_t *scratch;	/* read-back buffer */
	size_t cscratch;

	uint64_t written, synced;
	bool cut;		/* the active segment has remains past its size */
	int sync_err;		/* a sync failed: nothing is durable any more */
	struct journal_stats st;
};

/* ---- little-endian fields ---------------------------------------------- */

static inline uint16_t get16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return le16toh(v);
}

static inline uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static inline uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

static inline void put16(uint8_t *p, uint16_t v)
{
	v = htole16(v);
	memcpy(p, &v, 2);
}

static inline void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static inline void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint64_t clock_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void seg_name(char *out, size_t len, uint64_t first_seq)
{
	snprintf(out, len, "%016" PRIx64 ".seg", first_seq);
}

/* ---- record layout ------------------------------------------------------ */

/* In 64 bits: lengths read from disk must not wrap to a plausible size. */
static uint64_t pub_len(uint32_t len, uint32_t attr_len)
{
	return P_DATA + ALIGN_UP((uint64_t)len, 8) + ALIGN_UP((uint64_t)attr_len, 8);
}

/*
 * Does a record start at @p (with @avail bytes readable)? Its length, or
 * 0 with @why set. Every length is checked before it is used: this reads
 * whatever a disk returned.
 */
static uint32_t rec_check(const uint8_t *p, uint64_t avail, const char **why)
{
	uint32_t len;

	if (avail < JOURNAL_REC_HDR) {
		*why = "short";
		return 0;
	}
	if (get32(p + R_MAGIC) != REC_MAGIC) {
		*why = "bad magic";
		return 0;
	}
	len = get32(p + R_LEN);
	if (len < JOURNAL_REC_HDR || len > JOURNAL_REC_MAX || len % 8 ||
	    len > avail) {
		*why = "bad length";
		return 0;
	}
	if (crc32c(0, p + R_LEN, len - R_LEN) != get32(p + R_CRC)) {
		*why = "bad crc";
		return 0;
	}
	switch (get16(p + R_TYPE)) {
	case J_PUB:
		if (len < P_DATA ||
		    len != pub_len(get32(p + P_LEN), get32(p + P_ALEN))) {
			*why = "bad PUB body";
			return 0;
		}
		break;
	case J_SETTLE:
		if (len != SETTLE_LEN) {
			*why = "bad SETTLE body";
			return 0;
		}
		break;
	case J_STATE:
		if (len != STATE_LEN) {
			*why = "bad STATE body";
			return 0;
		}
		break;
	default:
		*why = "unknown type";
		return 0;
	}
	return len;
}

static void rec_seal(uint8_t *p, uint32_t len)
{
	put32(p + R_CRC, crc32c(0, p + R_LEN, len - R_LEN));
}

static void rec_head(uint8_t *p, uint16_t type, uint32_t len, uint64_t seq,
		     uint64_t id)
{
	put32(p + R_MAGIC, REC_MAGIC);
	put32(p + R_LEN, len);
	put16(p + R_TYPE, type);
	put16(p + R_FLAGS, 0);
	put64(p + R_SEQ, seq);
	put64(p + R_ID, id);
}

/* A checked PUB record as a jmsg pointing into it. */
static void pub_parse(const uint8_t *p, struct jmsg *m)
{
	m->id = get64(p + R_ID);
	m->order = get64(p + P_ORDER);
	m->pub_rt = get64(p + P_PUB);
	m->expires_rt = get64(p + P_EXP);
	m->due_rt = get64(p + P_DUE);
	m->corr_id = get64(p + P_CORR);
	m->dedup_key = get64(p + P_DEDUP);
	m->delivery_count = get32(p + P_DC);
	m->mflags = get32(p + P_MFLAGS);
	m->prio = get32(p + P_PRIO);
	m->dl_reason = get32(p + P_DLR);
	m->dl_count = get32(p + P_DLC);
	m->len = get32(p + P_LEN);
	m->attr_len = get32(p + P_ALEN);
	m->payload = p + P_DATA;
	m->attrs = p + P_DATA + ALIGN_UP((uint64_t)m->len, 8);
}

/* ---- the index ------------------------------------------------------------ */

/* Fibonacci hashing: the product's top bits mix every bit of the id. */
static inline uint64_t hslot(const struct journal *j, uint64_t id)
{
	return id * 0x9e3779b97f4a7c15ull >> (64 - j->hbits);
}

static struct jnode *hfind(struct journal *j, uint64_t id)
{
	struct jnode *n;

	for (n = j->htab[hslot(j, id)]; n; n = n->hnext)
		if (n->e.id == id)
			return n;
	return NULL;
}

/* Double the table when it is full; a failed grow only makes chains longer. */
static void hgrow(struct journal *j)
{
	uint64_t size = (j->hmask + 1) * 2, i;
	struct jnode **t = calloc(size, sizeof(*t)), **old = j->htab;

	if (!t)
		return;
	j->htab = t;
	j->hmask = size - 1;
	j->hbits++;
	for (i = 0; i < size / 2; i++) {
		struct jnode *n = old[i], *nx;

		for (; n; n = nx) {
			nx = n->hnext;
			n->hnext = t[hslot(j, n->e.id)];
			t[hslot(j, n->e.id)] = n;
		}
	}
	free(old);
}

static void order_link_after(struct journal *j, struct jnode *p,
			     struct jnode *n)
{
	n->prev = p;
	n->next = p ? p->next : j->head;
	if (n->next)
		n->next->prev = n;
	else
		j->tail = n;
	if (p)
		p->next = n;
	else
		j->head = n;
}

/*
 * Queue order. Appends (order = seq) go to the tail in O(1); a run of
 * older orders (copies forward of a deleted segment's messages, replayed)
 * goes next to the previous insertion, where the finger starts.
 */
static void order_insert(struct journal *j, struct jnode *n)
{
	uint64_t o = n->e.order;
	struct jnode *p;

	if (!j->tail || j->tail->e.order <= o) {
		p = j->tail;
	} else if (j->head->e.order > o) {
		p = NULL;
	} else {
		p = j->finger ? j->finger : j->tail;
		if (p->e.order <= o) {
			while (p->next && p->next->e.order <= o)
				p = p->next;
		} else {
			while (p->e.order > o)	/* head->order <= o stops it */
				p = p->prev;
		}
	}
	order_link_after(j, p, n);
	j->finger = n;
}

static void order_remove(struct journal *j, struct jnode *n)
{
	if (n->prev)
		n->prev->next = n->next;
	else
		j->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		j->tail = n->prev;
	if (j->finger == n)
		j->finger = n->prev;
}

static void index_add(struct journal *j, struct jnode *n)
{
	uint64_t s;

	if (j->nlive > j->hmask)
		hgrow(j);
	s = hslot(j, n->e.id);
	n->hnext = j->htab[s];
	j->htab[s] = n;
	order_insert(j, n);
	j->nlive++;
}

static void index_del(struct journal *j, struct jnode *n)
{
	struct jnode **pp = &j->htab[hslot(j, n->e.id)];

	while (*pp != n)
		pp = &(*pp)->hnext;
	*pp = n->hnext;
	order_remove(j, n);
	j->nlive--;
}

static void set_order(struct journal *j, struct jnode *n, uint64_t order)
{
	if (n->e.order == order)
		return;
	order_remove(j, n);
	n->e.order = order;
	order_insert(j, n);
}

/* ---- which segment holds which live PUB ---------------------------------- */

static void place(struct jnode *n, struct jseg *s, uint64_t off, uint32_t rlen)
{
	n->seg = s;
	n->off = off;
	n->rlen = rlen;
	n->sprev = NULL;
	n->snext = s->nodes;
	if (s->nodes)
		s->nodes->sprev = n;
	s->nodes = n;
	s->live++;
	s->live_bytes += rlen;
}

/* @n's PUB in its segment no longer counts, from position @pos on. */
static void unplace(struct jnode *n, uint64_t pos)
{
	struct jseg *s = n->seg;

	if (!s)
		return;
	if (n->sprev)
		n->sprev->snext = n->snext;
	else
		s->nodes = n->snext;
	if (n->snext)
		n->snext->sprev = n->sprev;
	s->live--;
	s->live_bytes -= n->rlen;
	if (s->release_pos < pos)
		s->release_pos = pos;
	n->seg = NULL;
}

/* When a key published at @pub_rt leaves its window (a producer's time
 * near the end of the range must not wrap to the past). */
static uint64_t key_end(const struct journal *j, uint64_t pub_rt)
{
	return pub_rt > UINT64_MAX - j->dedup_window ? UINT64_MAX :
	       pub_rt + j->dedup_window;
}

/* A PUB in @s carries @key: @s stays until the key's window is over. */
static void seg_key(struct journal *j, struct jseg *s, uint64_t key,
		    uint64_t pub_rt)
{
	if (key && s->dedup_until < key_end(j, pub_rt))
		s->dedup_until = key_end(j, pub_rt);
}

/* A key first seen: remembered for journal_each_key(). */
static void key_add(struct journal *j, struct jseg *s, uint64_t key,
		    uint64_t pub_rt)
{
	uint64_t end = key_end(j, pub_rt);

	if (!key)
		return;
	seg_key(j, s, key, pub_rt);
	if (j->nkeys == j->ckeys) {
		size_t c = j->ckeys ? j->ckeys * 2 : 64;
		struct dkey *k = realloc(j->keys, c * sizeof(*k));

		if (!k) {
			log_warn("journal %s: no memory for dedup key %" PRIx64,
				 j->name, key);
			return;
		}
		j->keys = k;
		j->ckeys = c;
	}
	j->keys[j->nkeys++] = (struct dkey){ key, end };
}

/*
 * The index change of a PUB record of @m at @off in @s, ending at journal
 * position @end (replay). Returns -ENOMEM only.
 */
static int apply_pub(struct journal *j, const struct jmsg *m, struct jseg *s,
		     uint64_t off, uint32_t rlen, uint64_t end)
{
	struct jnode *n = hfind(j, m->id);

	if (n) {
		unplace(n, end);
		n->e.expires_rt = m->expires_rt;
		n->e.due_rt = m->due_rt;
		n->e.pub_rt = m->pub_rt;
		n->e.dedup_key = m->dedup_key;
		n->e.delivery_count = m->delivery_count;
		n->e.mflags = m->mflags;
		if (m->order < n->e.order)
			set_order(j, n, m->order);
		place(n, s, off, rlen);
		seg_key(j, s, m->dedup_key, m->pub_rt);
		return 0;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->e = (struct jent){
		.id = m->id, .order = m->order, .expires_rt = m->expires_rt,
		.due_rt = m->due_rt, .pub_rt = m->pub_rt,
		.dedup_key = m->dedup_key,
		.delivery_count = m->delivery_count, .mflags = m->mflags,
	};
	index_add(j, n);
	place(n, s, off, rlen);
	key_add(j, s, m->dedup_key, m->pub_rt);
	return 0;
}

static void node_free(struct journal *j, struct jnode *n, uint64_t end)
{
	unplace(n, end);
	free(n);
}

/* ---- replay ------------------------------------------------------------------ */

struct scan {
	const char *file;
	uint64_t last_seq;	/* 0: none seen yet */
};

static int replay_rec(struct journal *j, struct jseg *s, const uint8_t *p,
		      uint64_t off, uint32_t len)
{
	uint64_t end = s->pos + off + len;
	struct jnode *n;
	struct jmsg m;

	switch (get16(p + R_TYPE)) {
	case J_PUB:
		pub_parse(p, &m);
		return apply_pub(j, &m, s, off, len, end);
	case J_SETTLE:
		n = hfind(j, get64(p + R_ID));
		if (n) {
			index_del(j, n);
			node_free(j, n, end);
		}
		return 0;
	case J_STATE:
		n = hfind(j, get64(p + R_ID));
		if (n) {
			n->e.due_rt = get64(p + T_DUE);
			n->e.delivery_count = get32(p + T_DC);
			n->e.mflags = get32(p + T_MFLAGS);
		}
		return 0;
	}
	return 0;
}

/* A record at @off that validates and follows the last seq: its length. */
static uint32_t rec_at(const uint8_t *map, uint64_t size, uint64_t off,
		       const struct scan *sc, const char **why)
{
	uint32_t len = rec_check(map + off, size - off, why);

	if (len && sc->last_seq && get64(map + off + R_SEQ) <= sc->last_seq) {
		*why = "seq out of order";
		return 0;
	}
	return len;
}

/*
 * Replay the records of segment @s mapped at @map. In the last segment
 * (@last) an unreadable rest is a torn tail: the segment is cut there.
 */
static int replay_seg(struct journal *j, struct jseg *s, const uint8_t *map,
		      struct scan *sc, bool last)
{
	uint64_t off = JOURNAL_HDR_SIZE, size = s->size;
	const char *why;
	uint32_t len;
	int err;

	while (off < size) {
		len = rec_at(map, size, off, sc, &why);
		if (!len) {
			uint64_t at = off, next = off + 8;
			const char *why2;

			while (next < size && !rec_at(map, size, next, sc, &why2))
				next += 8;
			if (next >= size && last) {
				log_warn("journal %s: %s: torn tail at offset %" PRIu64
					 " (%s), %" PRIu64 " bytes cut", j->name,
					 sc->file, at, why, size - at);
				j->st.torn_bytes += size - at;
				s->size = at;
				if (ftruncate(s->fd, (off_t)at) < 0)
					return -errno;
				return 0;
			}
			log_warn("journal %s: %s: corrupt record at offset %" PRIu64
				 " (%s), %" PRIu64 " bytes skipped", j->name,
				 sc->file, at, why, (next < size ? next : size) - at);
			j->st.corrupt++;
			j->st.corrupt_bytes += (next < size ? next : size) - at;
			off = next;
			continue;
		}
		err = replay_rec(j, s, map + off, off, len);
		if (err)
			return err;
		sc->last_seq = get64(map + off + R_SEQ);
		j->st.replayed++;
		off += len;
	}
	return 0;
}

static bool seg_header_ok(const uint8_t *h, uint64_t first_seq)
{
	return !memcmp(h, seg_magic, 8) && get32(h + H_VERSION) == JOURNAL_VERSION &&
	       get32(h + H_SIZE) == JOURNAL_HDR_SIZE &&
	       get64(h + H_FIRST) == first_seq &&
	       crc32c(0, h, H_CRC) == get32(h + H_CRC);
}

static void seg_append(struct journal *j, struct jseg *s)
{
	s->prev = j->last;
	s->next = NULL;
	if (j->last)
		j->last->next = s;
	else
		j->segs = s;
	j->last = s;
	j->st.segments++;
}

static void seg_unlink(struct journal *j, struct jseg *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		j->segs = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		j->last = s->prev;
	if (j->active == s)
		j->active = NULL;
	j->st.segments--;
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

/*
 * Open and replay one segment file. A bad header skips the file, except
 * the last file shorter than a header: a creation the crash tore, removed.
 */
static int load_seg(struct journal *j, uint64_t first_seq, bool last,
		    struct scan *sc)
{
	char file[32];
	struct jseg *s;
	struct stat stb;
	uint8_t *map;
	int err = 0;

	seg_name(file, sizeof(file), first_seq);
	sc->file = file;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->first_seq = first_seq;
	s->pos = j->written;
	s->dir_synced = true;
	/* only the last one is ever written (cut, appended to); O_NONBLOCK:
	 * whatever has the name, opening it must not hang */
	s->fd = openat(j->dirfd, file, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC |
		       O_NOFOLLOW | O_NONBLOCK);
	if (s->fd < 0 || fstat(s->fd, &stb) < 0) {
		err = -errno;
		if (s->fd >= 0)
			close(s->fd);
		free(s);
		return err;
	}
	if (!S_ISREG(stb.st_mode)) {
		log_warn("journal %s: %s is not a regular file, ignored",
			 j->name, file);
		close(s->fd);
		free(s);
		return 0;
	}
	s->size = (uint64_t)stb.st_size;
	if (s->size < JOURNAL_HDR_SIZE && last) {
		log_warn("journal %s: %s: torn creation (%" PRIu64
			 " bytes), removed", j->name, file, s->size);
		j->st.torn_bytes += s->size;
		close(s->fd);
		free(s);
		if (unlinkat(j->dirfd, file, 0) < 0)
			return -errno;
		return fsync(j->dirfd) < 0 ? -errno : 0;
	}
	map = NULL;
	if (s->size >= JOURNAL_HDR_SIZE) {
		map = mmap(NULL, s->size, PROT_READ, MAP_PRIVATE, s->fd, 0);
		if (map == MAP_FAILED) {
			err = -errno;
			close(s->fd);
			free(s);
			return err;
		}
		madvise(map, s->size, MADV_SEQUENTIAL);
	}
	seg_append(j, s);
	if (!map || !seg_header_ok(map, first_seq)) {
		log_warn("journal %s: %s: bad segment header at offset 0, %" PRIu64
			 " bytes skipped", j->name, file, s->size);
		s->bad = true;
		j->st.corrupt++;
		j->st.corrupt_bytes += s->size;
	} else {
		if (sc->last_seq && first_seq != sc->last_seq + 1) {
			j->st.missing++;
			log_warn("journal %s: %s: records %" PRIu64 "..%" PRIu64
				 " are missing (seq gap before offset %u)",
				 j->name, file, sc->last_seq + 1, first_seq - 1,
				 JOURNAL_HDR_SIZE);
		}
		err = replay_seg(j, s, map, sc, last);
	}
	if (map)
		munmap(map, (size_t)stb.st_size);
	j->written += s->size;
	if (!err && fdatasync(s->fd) < 0)
		err = -errno;
	return err;
}

/* Parse "%016x.seg" exactly. */
static bool seg_file(const char *name, uint64_t *first_seq)
{
	uint64_t v = 0;
	int i;

	if (strlen(name) != 20 || strcmp(name + 16, ".seg"))
		return false;
	for (i = 0; i < 16; i++) {
		char c = name[i];

		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t)(c - 'a' + 10);
		else
			return false;
	}
	*first_seq = v;
	return true;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The first seqs of the segment files in the directory, sorted. */
static int list_segs(struct journal *j, uint64_t **out, size_t *nout)
{
	int fd = openat(j->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	uint64_t *v = NULL, *nv, seq;
	size_t n = 0, c = 0;
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (!seg_file(de->d_name, &seq))
			continue;
		if (n == c) {
			c = c ? c * 2 : 16;
			nv = realloc(v, c * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = seq;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_u64);
	*out = v;
	*nout = n;
	return 0;
}

static int replay(struct journal *j, char *why, size_t why_len)
{
	struct scan sc = { 0 };
	uint64_t *seqs = NULL;
	size_t n = 0, i;
	int err;

	err = list_segs(j, &seqs, &n);
	if (err) {
		snprintf(why, why_len, "cannot list the journal: %s",
			 strerror(-err));
		return err;
	}
	for (i = 0; i < n; i++) {
		err = load_seg(j, seqs[i], i == n - 1, &sc);
		if (err) {
			snprintf(why, why_len, "%016" PRIx64 ".seg: %s",
				 seqs[i], strerror(-err));
			break;
		}
	}
	j->next_seq = sc.last_seq + 1;
	if (j->last && !j->last->bad && j->last->first_seq > j->next_seq)
		j->next_seq = j->last->first_seq;	/* an empty last segment */
	if (j->last && j->last->bad && j->last->first_seq >= j->next_seq)
		j->next_seq = j->last->first_seq + 1;	/* never its name again */
	/* append to the last segment unless it is unreadable */
	j->active = j->last && !j->last->bad ? j->last : NULL;
	free(seqs);
	return err;
}

/* ---- open, close ---------------------------------------------------------------- */

/* Make @path's entry (created or removed) durable in its parent. */
static int fsync_parent(const char *path)
{
	char *parent = strdup(path), *slash;
	int fd, err = 0;

	if (!parent)
		return -ENOMEM;
	slash = strrchr(parent, '/');
	if (!slash)
		strcpy(parent, ".");
	else if (slash == parent)
		slash[1] = '\0';
	else
		*slash = '\0';
	fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		err = -errno;
	if (fd >= 0)
		close(fd);
	free(parent);
	return err;
}

static int make_dir(const char *dir)
{
	if (mkdir(dir, 0700) < 0)
		return errno == EEXIST ? 0 : -errno;
	return fsync_parent(dir);
}

int journal_open(const char *dir, const struct journal_cfg *cfg,
		 struct journal **out, char *why, size_t why_len)
{
	uint64_t t0 = clock_ns(CLOCK_MONOTONIC);
	struct journal *j;
	int err;

	if (cfg->segment_bytes && cfg->segment_bytes < JOURNAL_SEG_MIN) {
		snprintf(why, why_len, "segment size %" PRIu64 " is under %llu",
			 cfg->segment_bytes, JOURNAL_SEG_MIN);
		return -EINVAL;
	}
	err = make_dir(dir);
	if (err) {
		snprintf(why, why_len, "mkdir %s: %s", dir, strerror(-err));
		return err;
	}
	j = calloc(1, sizeof(*j));
	if (!j)
		goto nomem;
	j->dirfd = -1;
	j->name = strdup(cfg->name ? cfg->name : dir);
	j->hbits = 10;
	j->hmask = (1u << j->hbits) - 1;
	j->htab = calloc(j->hmask + 1, sizeof(*j->htab));
	if (!j->name || !j->htab) {
		journal_close(j);
		goto nomem;
	}
	j->seg_bytes = cfg->segment_bytes ? cfg->segment_bytes : JOURNAL_SEG_DEFAULT;
	j->dedup_window = cfg->dedup_window_ns;
	j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (j->dirfd < 0) {
		err = -errno;
		snprintf(why, why_len, "open %s: %s", dir, strerror(-err));
		journal_close(j);
		return err;
	}
	err = replay(j, why, why_len);
	if (err) {
		journal_close(j);
		return err;
	}
	j->synced = j->written;
	j->buf_seq = j->next_seq;
	j->st.open_ns = clock_ns(CLOCK_MONOTONIC) - t0;
	if (j->st.replayed || j->last)
		log_info("journal %s: %" PRIu64 " records replayed in %" PRIu64
			 " ms, %" PRIu64 " live, %u segments", j->name,
			 j->st.replayed, j->st.open_ns / 1000000, j->nlive,
			 j->st.segments);
	*out = j;
	return 0;
nomem:
	snprintf(why, why_len, "out of memory");
	return -ENOMEM;
}

/* Forget the buffer; the nodes of its settled messages are freed. */
static void buf_drop(struct journal *j)
{
	size_t i;

	for (i = 0; i < j->nops; i++)
		if (j->ops[i].type == J_SETTLE)
			free(j->ops[i].n);
	j->nops = 0;
	j->blen = 0;
	j->buf_seq = j->next_seq;
}

void journal_close(struct journal *j)
{
	struct jnode *n, *nx;

	if (!j)
		return;
	buf_drop(j);
	for (n = j->head; n; n = nx) {
		nx = n->next;
		free(n);
	}
	while (j->segs)
		seg_unlink(j, j->segs);
	if (j->dirfd >= 0)
		close(j->dirfd);
	free(j->htab);
	free(j->buf);
	free(j->ops);
	free(j->keys);
	free(j->scratch);
	free(j->name);
	free(j);
}

void journal_stats(const struct journal *j, struct journal_stats *st)
{
	const struct jseg *s;

	*st = j->st;
	st->bytes = 0;
	for (s = j->segs; s; s = s->next)
		st->bytes += s->size;
	st->live = j->nlive;
	st->written = j->written;
	st->synced = j->synced;
}

/* ---- appends ------------------------------------------------------------------ */

/* Room for a record of @len bytes and its undo entry: its bytes, zeroed. */
static uint8_t *buf_reserve(struct journal *j, uint32_t len, struct jop **op)
{
	uint8_t *p;

	if (j->blen + len > j->bcap) {
		size_t c = j->bcap ? j->bcap : 64 << 10;

		while (c < j->blen + len)
			c *= 2;
		p = realloc(j->buf, c);
		if (!p)
			return NULL;
		j->buf = p;
		j->bcap = c;
	}
	if (j->nops == j->cops) {
		size_t c = j->cops ? j->cops * 2 : 256;
		struct jop *o = realloc(j->ops, c * sizeof(*o));

		if (!o)
			return NULL;
		j->ops = o;
		j->cops = c;
	}
	p = j->buf + j->blen;
	memset(p, 0, len);
	*op = &j->ops[j->nops];
	**op = (struct jop){ .off = j->blen, .rlen = len };
	return p;
}

/* The reserved record is in: count it. */
static void buf_commit(struct journal *j, uint32_t len)
{
	j->blen += len;
	j->nops++;
	j->next_seq++;
}

static void pub_fill(uint8_t *p, const struct jmsg *m)
{
	put64(p + P_ORDER, m->order);
	put64(p + P_PUB, m->pub_rt);
	put64(p + P_EXP, m->expires_rt);
	put64(p + P_DUE, m->due_rt);
	put64(p + P_CORR, m->corr_id);
	put64(p + P_DEDUP, m->dedup_key);
	put32(p + P_DC, m->delivery_count);
	put32(p + P_MFLAGS, m->mflags);
	put32(p + P_PRIO, m->prio);
	put32(p + P_DLR, m->dl_reason);
	put32(p + P_DLC, m->dl_count);
	put32(p + P_LEN, m->len);
	put32(p + P_ALEN, m->attr_len);
	if (m->len)
		memcpy(p + P_DATA, m->payload, m->len);
	if (m->attr_len)
		memcpy(p + P_DATA + ALIGN_UP((uint64_t)m->len, 8), m->attrs,
		       m->attr_len);
}

int journal_pub(struct journal *j, struct jmsg *m)
{
	struct jnode *n = hfind(j, m->id), *fresh = NULL;
	uint64_t seq = j->next_seq;
	struct jop *op;
	uint32_t len;
	uint8_t *p;

	if (pub_len(m->len, m->attr_len) > JOURNAL_REC_MAX)
		return -EMSGSIZE;
	len = (uint32_t)pub_len(m->len, m->attr_len);
	if (!n) {
		fresh = calloc(1, sizeof(*fresh));
		if (!fresh)
			return -ENOMEM;
	}
	p = buf_reserve(j, len, &op);
	if (!p) {
		free(fresh);
		return -ENOMEM;
	}
	if (!m->order)
		m->order = seq;
	rec_head(p, J_PUB, len, seq, m->id);
	pub_fill(p, m);
	rec_seal(p, len);
	op->type = J_PUB;
	if (fresh) {
		/* located in the buffer until the flush places it */
		fresh->off = op->off;
		fresh->rlen = len;
		n = fresh;
		op->fresh = true;
	} else {
		op->old = n->e;
	}
	op->n = n;
	n->e.expires_rt = m->expires_rt;
	n->e.due_rt = m->due_rt;
	n->e.pub_rt = m->pub_rt;
	n->e.dedup_key = m->dedup_key;
	n->e.delivery_count = m->delivery_count;
	n->e.mflags = m->mflags;
	if (fresh) {
		n->e.id = m->id;
		n->e.order = m->order;
		index_add(j, n);
	} else if (m->order < n->e.order) {
		set_order(j, n, m->order);
	}
	buf_commit(j, len);
	return 0;
}

int journal_settle(struct journal *j, uint64_t id, uint32_t reason)
{
	struct jnode *n = hfind(j, id);
	struct jop *op;
	uint8_t *p;

	if (!n)
		return -ENOENT;
	p = buf_reserve(j, SETTLE_LEN, &op);
	if (!p)
		return -ENOMEM;
	rec_head(p, J_SETTLE, SETTLE_LEN, j->next_seq, id);
	put32(p + S_REASON, reason);
	rec_seal(p, SETTLE_LEN);
	op->type = J_SETTLE;
	op->n = n;
	/* out of the index now; freed when the flush made it count */
	index_del(j, n);
	n->settled = true;
	buf_commit(j, SETTLE_LEN);
	return 0;
}

int journal_state(struct journal *j, uint64_t id, uint32_t delivery_count,
		  uint64_t due_rt, uint32_t mflags)
{
	struct jnode *n = hfind(j, id);
	struct jop *op;
	uint8_t *p;

	if (!n)
		return -ENOENT;
	p = buf_reserve(j, STATE_LEN, &op);
	if (!p)
		return -ENOMEM;
	rec_head(p, J_STATE, STATE_LEN, j->next_seq, id);
	put64(p + T_DUE, due_rt);
	put32(p + T_DC, delivery_count);
	put32(p + T_MFLAGS, mflags);
	rec_seal(p, STATE_LEN);
	op->type = J_STATE;
	op->n = n;
	op->old = n->e;
	n->e.due_rt = due_rt;
	n->e.delivery_count = delivery_count;
	n->e.mflags = mflags;
	buf_commit(j, STATE_LEN);
	return 0;
}

/* ---- flush ------------------------------------------------------------------------ */

/* A new segment for the buffer's records, named by the first one's seq. */
static int roll(struct journal *j)
{
	uint8_t h[JOURNAL_HDR_SIZE] = { 0 };
	char file[32];
	struct jseg *s;
	ssize_t w;
	int err;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	seg_name(file, sizeof(file), j->buf_seq);
	s->fd = openat(j->dirfd, file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC |
		       O_NOFOLLOW, 0600);
	if (s->fd < 0) {
		err = -errno;
		log_warn("journal %s: cannot create %s: %s", j->name, file,
			 strerror(-err));
		free(s);
		return err;
	}
	memcpy(h, seg_magic, 8);
	put32(h + H_VERSION, JOURNAL_VERSION);
	put32(h + H_SIZE, JOURNAL_HDR_SIZE);
	put64(h + H_FIRST, j->buf_seq);
	put64(h + H_CREATED, clock_ns(CLOCK_REALTIME));
	put32(h + H_CRC, crc32c(0, h, H_CRC));
	w = pwrite(s->fd, h, sizeof(h), 0);
	if (w != (ssize_t)sizeof(h)) {
		err = w < 0 ? -errno : -ENOSPC;
		log_warn("journal %s: cannot write the header of %s: %s",
			 j->name, file, strerror(-err));
		close(s->fd);
		unlinkat(j->dirfd, file, 0);
		free(s);
		return err;
	}
	s->first_seq = j->buf_seq;
	s->pos = j->written;
	s->size = JOURNAL_HDR_SIZE;
	seg_append(j, s);
	j->active = s;
	j->written += JOURNAL_HDR_SIZE;
	return 0;
}

/* The index changes of the buffer, newest first, as if it never was. */
static void buf_undo(struct journal *j)
{
	size_t i = j->nops;

	while (i--) {
		struct jop *op = &j->ops[i];
		struct jnode *n = op->n;
		uint64_t user = n->e.user;

		switch (op->type) {
		case J_PUB:
			if (op->fresh) {
				index_del(j, n);
				free(n);
				break;
			}
			set_order(j, n, op->old.order);
			n->e = op->old;
			n->e.user = user;
			break;
		case J_SETTLE:
			n->settled = false;
			index_add(j, n);
			break;
		case J_STATE:
			n->e = op->old;
			n->e.user = user;
			break;
		}
	}
	j->nops = 0;
	j->blen = 0;
	j->next_seq = j->buf_seq;
}

/* The buffer is in @s from @base on: make its records count. */
static void buf_apply(struct journal *j, struct jseg *s, uint64_t base)
{
	size_t i;

	for (i = 0; i < j->nops; i++) {
		struct jop *op = &j->ops[i];
		struct jnode *n = op->n;
		uint64_t off = base + op->off;
		uint64_t end = s->pos + off + op->rlen;

		switch (op->type) {
		case J_PUB:
			unplace(n, end);
			place(n, s, off, op->rlen);
			if (op->fresh)
				key_add(j, s, n->e.dedup_key, n->e.pub_rt);
			else
				seg_key(j, s, n->e.dedup_key, n->e.pub_rt);
			break;
		case J_SETTLE:
			node_free(j, n, end);
			break;
		}
	}
	j->nops = 0;
	j->blen = 0;
	j->buf_seq = j->next_seq;
}

/*
 * Cut the remains of a failed write off the active segment. Until that
 * works nothing more may go there: a replay would take the remains'
 * complete records, whose index changes were undone, for real ones.
 */
static int cut_remains(struct journal *j)
{
	struct jseg *s = j->active;

	if (ftruncate(s->fd, (off_t)s->size) < 0) {
		int err = -errno;

		log_warn("journal %s: cannot cut a failed write off at %" PRIu64
			 ": %s", j->name, s->size, strerror(-err));
		return err;
	}
	j->cut = false;
	return 0;
}

int journal_flush(struct journal *j)
{
	struct jseg *s;
	uint64_t base;
	size_t done = 0;
	int err;

	if (!j->blen)
		return 0;
	if (j->sync_err) {
		err = j->sync_err;
		goto fail;
	}
	if (j->cut) {
		err = cut_remains(j);
		if (err)
			goto fail;
	}
	if (!j->active || j->active->size >= j->seg_bytes) {
		err = roll(j);
		if (err)
			goto fail;
	}
	s = j->active;
	base = s->size;
	while (done < j->blen) {
		ssize_t w = pwrite(s->fd, j->buf + done, j->blen - done,
				   (off_t)(base + done));

		if (w > 0) {
			done += (size_t)w;
			continue;
		}
		err = w < 0 ? -errno : -EIO;
		if (err == -EINTR)
			continue;
		if (done) {
			j->cut = true;
			cut_remains(j);
		}
		goto fail;
	}
	s->size += j->blen;
	j->written += j->blen;
	buf_apply(j, s, base);
	return 0;
fail:
	log_warn("journal %s: flush of %zu records (%zu bytes) failed: %s",
		 j->name, j->nops, j->blen, strerror(-err));
	buf_undo(j);
	return err;
}

uint64_t journal_written(const struct journal *j)
{
	return j->written;
}

/* ---- group commit ------------------------------------------------------------------ */

void journal_sync_begin(struct journal *j, struct jsync *s)
{
	struct jseg *g;
	bool new_entry = false;

	s->nfds = 0;
	s->dirfd = -1;
	s->pos = j->synced;
	if (j->sync_err)
		return;
	for (g = j->segs; g; g = g->next) {
		int fd;

		if (g->pos + g->size <= j->synced)
			continue;
		if (s->nfds == JSYNC_FDS)
			break;
		fd = fcntl(g->fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			break;
		s->fds[s->nfds++] = fd;
		s->pos = g->pos + g->size;
		if (!g->dir_synced)
			new_entry = true;
	}
	if (new_entry) {
		s->dirfd = fcntl(j->dirfd, F_DUPFD_CLOEXEC, 3);
		if (s->dirfd < 0) {
			/* records in a segment whose name may not survive
			 * are not durable: the next round tries again */
			while (s->nfds)
				close(s->fds[--s->nfds]);
			s->pos = j->synced;
		}
	}
}

int journal_sync_run(struct jsync *s)
{
	unsigned i;

	for (i = 0; i < s->nfds; i++)
		if (fdatasync(s->fds[i]) < 0)
			return -errno;
	if (s->dirfd >= 0 && fsync(s->dirfd) < 0)
		return -errno;
	return 0;
}

void journal_sync_end(struct journal *j, struct jsync *s, int err)
{
	struct jseg *g;

	while (s->nfds)
		close(s->fds[--s->nfds]);
	if (s->dirfd >= 0)
		close(s->dirfd);
	s->dirfd = -1;
	if (err) {
		/* After a failed fdatasync() the kernel may have dropped the
		 * dirty pages, or marked them clean: a retry can succeed with
		 * nothing written. What was written since the last good
		 * sync may be lost, and no later sync can say otherwise. */
		if (!j->sync_err)
			log_err("journal %s: sync failed: %s; the journal "
				"takes no more records", j->name, strerror(-err));
		j->sync_err = err;
		return;
	}
	if (s->pos <= j->synced)
		return;
	j->synced = s->pos;
	for (g = j->segs; g && g->pos < s->pos; g = g->next)
		g->dir_synced = true;
}

uint64_t journal_synced(const struct journal *j)
{
	return j->synced;
}

/* ---- the index, read --------------------------------------------------------------- */

struct jent *journal_find(struct journal *j, uint64_t id)
{
	struct jnode *n = hfind(j, id);

	return n ? &n->e : NULL;
}

struct jent *journal_first(struct journal *j)
{
	return j->head ? &j->head->e : NULL;
}

struct jent *journal_next(struct journal *j, struct jent *e)
{
	struct jnode *n = container_of(e, struct jnode, e);

	return n->next ? &n->next->e : NULL;
}

/*
 * The PUB record of @n, checked, copied into the scratch buffer from its
 * segment or from the append buffer (which an append may move while the
 * caller still looks at it). NULL when it cannot be read back (logged).
 */
static const uint8_t *read_pub(struct journal *j, struct jnode *n)
{
	const char *why = "short read";
	const uint8_t *p;
	char file[32];
	ssize_t r;

	if (j->cscratch < n->rlen) {
		uint8_t *b = realloc(j->scratch, n->rlen);

		if (!b) {
			why = "out of memory";
			goto bad;
		}
		j->scratch = b;
		j->cscratch = n->rlen;
	}
	if (!n->seg) {
		memcpy(j->scratch, j->buf + n->off, n->rlen);
	} else {
		r = pread(n->seg->fd, j->scratch, n->rlen, (off_t)n->off);
		if (r != (ssize_t)n->rlen) {
			if (r < 0)
				why = strerror(errno);
			goto bad;
		}
	}
	p = j->scratch;
	if (rec_check(p, n->rlen, &why) != n->rlen)
		goto bad;
	if (get16(p + R_TYPE) != J_PUB || get64(p + R_ID) != n->e.id) {
		why = "not its PUB";
		goto bad;
	}
	return p;
bad:
	seg_name(file, sizeof(file), n->seg ? n->seg->first_seq : 0);
	log_warn("journal %s: %s: message %" PRIu64 " at offset %" PRIu64
		 " cannot be read back (%s)", j->name,
		 n->seg ? file : "(buffer)", n->e.id, n->off, why);
	j->st.corrupt++;
	return NULL;
}

static int each_live(struct journal *j, bool unplaced,
		     int (*fn)(void *arg, const struct jent *e,
			       const struct jmsg *m),
		     void *arg)
{
	struct jnode *n, *nx;
	int ret;

	for (n = j->head; n; n = nx) {
		const uint8_t *p;
		struct jmsg m;

		nx = n->next;
		if (unplaced && n->e.user)
			continue;	/* not even read back */
		p = read_pub(j, n);
		if (!p)
			continue;
		pub_parse(p, &m);
		/* the entry's current state, not the PUB's */
		m.order = n->e.order;
		m.due_rt = n->e.due_rt;
		m.delivery_count = n->e.delivery_count;
		m.mflags = n->e.mflags;
		ret = fn(arg, &n->e, &m);
		if (ret)
			return ret;
	}
	return 0;
}

int journal_each_live(struct journal *j,
		      int (*fn)(void *arg, const struct jent *e,
				const struct jmsg *m),
		      void *arg)
{
	return each_live(j, false, fn, arg);
}

int journal_each_unplaced(struct journal *j,
			  int (*fn)(void *arg, const struct jent *e,
				    const struct jmsg *m),
			  void *arg)
{
	return each_live(j, true, fn, arg);
}

void journal_each_key(struct journal *j, uint64_t now_rt,
		      void (*fn)(void *arg, uint64_t key, uint64_t expires_rt),
		      void *arg)
{
	size_t i, k = 0;

	/* drop the expired ones on the way */
	for (i = 0; i < j->nkeys; i++) {
		if (j->keys[i].end <= now_rt)
			continue;
		j->keys[k++] = j->keys[i];
		fn(arg, j->keys[i].key, j->keys[i].end);
	}
	j->nkeys = k;
}

/* ---- housekeeping -------------------------------------------------------------------- */

/* May the oldest segment @s go? */
static bool seg_done(const struct journal *j, const struct jseg *s,
		     uint64_t now_rt)
{
	return s != j->active && !s->live && s->pos + s->size <= j->synced &&
	       s->release_pos <= j->synced && s->dedup_until <= now_rt;
}

static int seg_delete(struct journal *j, struct jseg *s)
{
	char file[32];

	seg_name(file, sizeof(file), s->first_seq);
	if (unlinkat(j->dirfd, file, 0) < 0 && errno != ENOENT)
		return -errno;
	seg_unlink(j, s);
	j->st.deleted_segments++;
	/* the next unlink must not be durable before this one */
	if (fsync(j->dirfd) < 0)
		return -errno;
	return 0;
}

/* Append a copy of @n's PUB with its current state. */
static int copy_forward(struct journal *j, struct jnode *n)
{
	const uint8_t *src = read_pub(j, n);
	struct jmsg m;

	if (!src)
		return -EIO;
	pub_parse(src, &m);
	m.order = n->e.order;
	m.due_rt = n->e.due_rt;
	m.delivery_count = n->e.delivery_count;
	m.mflags = n->e.mflags;
	/* journal_pub() copies out of the scratch buffer before it can
	 * be reused */
	return journal_pub(j, &m);
}

static int compact(struct journal *j, struct jseg *s, uint64_t budget)
{
	uint64_t copied = 0;
	struct jnode *n, *nx;
	int err;

	for (n = s->nodes; n && (copied < budget || !copied); n = nx) {
		nx = n->snext;
		/* its SETTLE is buffered: a copy would bring it back */
		if (n->settled)
			continue;
		err = copy_forward(j, n);
		if (err == -EIO)
			continue;	/* logged: it pins the segment */
		if (err)
			return err;
		copied += n->rlen;
		j->st.compacted++;
	}
	return journal_flush(j);
}

int journal_gc(struct journal *j, uint64_t now_rt, uint64_t budget)
{
	struct jseg *s;
	int deleted = 0, err;

	while ((s = j->segs) && seg_done(j, s, now_rt)) {
		char file[32];

		seg_name(file, sizeof(file), s->first_seq);
		err = seg_delete(j, s);
		if (err) {
			log_warn("journal %s: cannot delete %s: %s", j->name,
				 file, strerror(-err));
			return err;
		}
		deleted++;
	}
	s = j->segs;
	if (s && s != j->active && s->live && s->live_bytes * 4 < s->size &&
	    s->pos + s->size <= j->synced && budget) {
		err = compact(j, s, budget);
		if (err)
			return err;
	}
	return deleted;
}

int journal_destroy(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	struct dirent *de;
	int err = 0;
	DIR *d;

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	d = fdopendir(fd);
	if (!d) {
		err = -errno;
		close(fd);
		return err;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) < 0 && !err)
			err = -errno;
	}
	closedir(d);
	if (err)
		return err;
	if (rmdir(dir) < 0)
		return -errno;
	return fsync_parent(dir);
}
