// SPDX-License-Identifier: MIT
/*
 * statedir.c - the state directory of durable queues (docs/operations.md):
 * one daemon's lock on it, the paths in it, and the two small files that
 * say what to make again after a reboot: a bus's bus.conf (group, mode,
 * geometry) and a queue's queue.conf (its declare). Both are text, "key
 * value" lines, written atomically (a temporary file, fsync, rename, fsync
 * of the directory) and only when they change. The journals beside them
 * are journal.c's.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmbusd.h"

/* short enough that every path under it fits PATH_MAX */
static char state_dir[PATH_MAX - 512];	/* "" = none */
static int state_lock = -1;		/* flock of STATE/lock, -1 = not ours */
static const char *state_why = "no state directory";

int statedir_set(const char *dir)
{
	if (snprintf(state_dir, sizeof(state_dir), "%s", dir) >=
	    (int)sizeof(state_dir)) {
		state_dir[0] = '\0';
		return -ENAMETOOLONG;
	}
	return 0;
}

const char *statedir_path(void)
{
	return state_dir[0] ? state_dir : NULL;
}

const char *statedir_why(void)
{
	return state_why;
}

void statedir_fini(void)
{
	if (state_lock >= 0)
		close(state_lock);
	state_lock = -1;
}

/* mkdir -p @path, each directory 0700. */
int statedir_mkdirs(const char *path)
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

/*
 * Is @dir, and every directory above it, out of other users' reach? The
 * state directory holds every user's messages, and the daemon makes,
 * renames and removes files in it by path: a directory on the way that
 * someone else owns or may write to (a --state-dir under /tmp that another
 * user made first, or a symlink there) would hand them all of it. So,
 * symlinks resolved (into @real, which the daemon uses from then on): each
 * directory owned by root or by us, none writable by others but a sticky
 * one (/tmp: what we own in it stays ours), the last one ours alone.
 */
static int path_private(const char *dir, char *real, size_t len,
			const char **why)
{
	uid_t me = geteuid();
	char buf[PATH_MAX];
	struct stat st;

	if (!realpath(dir, buf))
		return -errno;
	/* each prefix that ends at a '/', then the whole */
	for (size_t i = 1;; i++) {
		bool last = !buf[i];
		int r;

		if (buf[i] != '/' && !last)
			continue;
		buf[i] = '\0';
		r = lstat(buf, &st);
		if (!last)
			buf[i] = '/';
		if (r < 0)
			return -errno;
		if (!S_ISDIR(st.st_mode)) {
			*why = "not a directory";
			return -ENOTDIR;
		}
		if (last && (st.st_uid != me || (st.st_mode & 022))) {
			*why = "it is not the daemon user's alone (owner, or "
			       "group or others may write)";
			return -EPERM;
		}
		if (st.st_uid != me && st.st_uid != 0) {
			*why = "a directory above it belongs to another user";
			return -EPERM;
		}
		if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX)) {
			*why = "others may write to a directory above it";
			return -EPERM;
		}
		if (last)
			break;
	}
	if (snprintf(real, len, "%s", buf) >= (int)len)
		return -ENAMETOOLONG;
	return 0;
}

/* Take STATE/lock: one daemon per state directory. */
bool statedir_ready(void)
{
	char path[PATH_MAX + 8], real[sizeof(state_dir)];
	const char *why = "";
	int err, fd;

	if (state_lock >= 0)
		return true;
	if (!state_dir[0])
		return false;
	err = statedir_mkdirs(state_dir);
	if (err) {
		log_warn("state directory %s: %s", state_dir, strerror(-err));
		state_why = "the state directory cannot be created (see the "
			    "daemon's log)";
		return false;
	}
	err = path_private(state_dir, real, sizeof(real), &why);
	if (err) {
		log_err("state directory %s: %s%s%s: no durable queues",
			state_dir, strerror(-err), why[0] ? ": " : "", why);
		state_why = "the state directory is not private to the daemon "
			    "(see the daemon's log)";
		return false;
	}
	memcpy(state_dir, real, sizeof(state_dir));
	snprintf(path, sizeof(path), "%s/lock", state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		err = -errno;
		log_warn("state directory %s: lock: %s", state_dir,
			 strerror(errno));
		state_why = "the state directory's lock cannot be opened";
		return false;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		log_warn("state directory %s is in use by another daemon: no "
			 "persistent queues here", state_dir);
		state_why = "the state directory is in use by another daemon";
		close(fd);
		return false;
	}
	state_lock = fd;
	return true;
}

/* Is the file name @s a valid bus or queue name (proto_name_valid() wants
 * the zero-padded field)? */
bool statedir_name_ok(const char *s)
{
	char f[SHMBUS_NAME_MAX] = { 0 };
	size_t n = strlen(s);

	if (n >= SHMBUS_NAME_MAX)
		return false;
	memcpy(f, s, n);
	return proto_name_valid(f) == 0;
}

/* STATE/UID/BUS and STATE/UID/BUS/queues/QUEUE. */
int statedir_bus_of(uid_t uid, const char *name, char *buf, size_t len)
{
	if (!state_dir[0])
		return -ENOENT;
	return snprintf(buf, len, "%s/%u/%s", state_dir, (unsigned)uid,
			name) >= (int)len ? -ENAMETOOLONG : 0;
}

int statedir_bus(const struct dbus *b, char *buf, size_t len)
{
	return statedir_bus_of(b->owner_uid, b->name, buf, len);
}

int statedir_queue(const struct dbus *b, const char *q, char *buf,
		   size_t len)
{
	/* queues apart from the bus's own files: a queue may be called
	 * "bus.conf" */
	return snprintf(buf, len, "%s/%u/%s/queues/%s", state_dir,
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
int statedir_bus_save(const struct dbus *b)
{
	const struct arena *a = &b->arena;
	char dir[PATH_MAX], text[1024];
	int n, err;

	err = statedir_bus(b, dir, sizeof(dir));
	if (!err)
		err = statedir_mkdirs(dir);
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
			      "pool%u %u\ncount%u %u\nmax%u %u\n", i,
			      a->pool[i].payload_max, i, a->pool[i].nr_chunks,
			      i, a->pool[i].nr_max);
	return file_put(dir, "bus.conf", text);
}

void statedir_bus_remove(const struct dbus *b)
{
	char dir[PATH_MAX], path[PATH_MAX + 16];

	if (statedir_bus(b, dir, sizeof(dir)))
		return;
	/* bus.conf first: a crash after it leaves empty directories, which
	 * a recovery skips, never a bus.conf that makes the bus again */
	snprintf(path, sizeof(path), "%s/bus.conf", dir);
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn("bus %u:%s: %s: %s", b->owner_uid, b->name, path,
			 strerror(errno));
	dir_sync(dir);
	snprintf(path, sizeof(path), "%s/queues", dir);
	if ((rmdir(path) < 0 && errno != ENOENT) ||
	    (rmdir(dir) < 0 && errno != ENOENT))
		log_warn("bus %u:%s: %s stays: %s", b->owner_uid, b->name,
			 dir, strerror(errno));
}

/* queue.conf: the declare, as the daemon received it. */
int statedir_queue_save(const char *dir, const struct sbc_queue_declare *q,
			const struct sbc_subscribe *sub)
{
	char text[1024];
	int n;

	n = snprintf(text, sizeof(text),
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
	if (sub)
		snprintf(text + n, sizeof(text) - (size_t)n,
			 "sub 1\npattern %s\ngroup %s\nsub_flags %u\n",
			 sub->pattern, sub->group, sub->flags);
	return file_put(dir, "queue.conf", text);
}

/* The declare queue.conf in @dir describes, for queue @name. */
int statedir_queue_load(const char *dir, const char *name,
			struct sbc_queue_declare *q, struct sbc_subscribe *sub,
			bool *is_sub)
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
	if (!statedir_entry_ok(name))
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
	/* what a declare would refuse: an adopted queue takes these as they
	 * are (the rest a recovery's declare checks again) */
	if (q->sync > SHMBUS_JSYNC_NEVER ||
	    (q->sync_interval_ns && (q->sync != SHMBUS_JSYNC_BATCH ||
				     q->sync_interval_ns < 100000 ||
				     q->sync_interval_ns > 1000000000)))
		return -EBADMSG;
	conf_word(text, "dlq", q->dlq, sizeof(q->dlq));
	if (q->dlq[0] && !statedir_name_ok(q->dlq))
		return -EBADMSG;
	*is_sub = conf_num(text, "sub", &v[0]) && v[0] == 1;
	if (!*is_sub)
		return statedir_name_ok(name) ? 0 : -EBADMSG;
	memset(sub, 0, sizeof(*sub));
	conf_word(text, "pattern", sub->pattern, sizeof(sub->pattern));
	conf_word(text, "group", sub->group, sizeof(sub->group));
	if (!conf_num(text, "sub_flags", &v[0]) || v[0] & ~SBC_SUB__ALL ||
	    proto_pattern_valid(sub->pattern) || proto_name_valid(sub->group))
		return -EBADMSG;
	sub->flags = (uint32_t)v[0];
	sub->max_len = q->max_len;
	sub->max_consumers = q->max_consumers;
	sub->lease_ns = q->lease_ns;
	sub->sync = q->sync;
	sub->sync_interval_ns = q->sync_interval_ns;
	return 0;
}

bool statedir_entry_ok(const char *s)
{
	char pat[SHMBUS_NAME_MAX] = { 0 }, grp[SHMBUS_NAME_MAX] = { 0 };
	const char *hash = strchr(s, '#');

	if (statedir_name_ok(s))
		return true;
	/* a persistent subscription: PATTERN#GROUP */
	if (!hash || strlen(s) >= SHMBUS_NAME_MAX || strchr(hash + 1, '#'))
		return false;
	memcpy(pat, s, (size_t)(hash - s));
	memcpy(grp, hash + 1, strlen(hash + 1));
	return !proto_pattern_valid(pat) && !proto_name_valid(grp);
}

int statedir_bus_load(const char *dir, struct sbc_bus_open *req, gid_t *gid)
{
	char text[1024];
	uint64_t v, pools;

	if (file_get(dir, "bus.conf", text, sizeof(text)))
		return -ENOENT;
	if (!conf_num(text, "gid", &v))
		return -EBADMSG;
	*gid = (gid_t)v;
	if (!conf_num(text, "mode", &v) || v > 0777)
		return -EBADMSG;
	req->mode = (uint32_t)v;
	if (!conf_num(text, "max_queues", &v) || v > UINT32_MAX)
		return -EBADMSG;
	req->max_queues = (uint32_t)v;
	if (!conf_num(text, "max_slots", &v) || v > UINT32_MAX)
		return -EBADMSG;
	req->max_slots = (uint32_t)v;
	if (!conf_num(text, "ring_bytes", &req->ring_bytes) ||
	    !conf_num(text, "pools", &pools) || pools > SHMBUS_MAX_POOLS)
		return -EBADMSG;
	req->nr_pools = (uint32_t)pools;
	for (unsigned i = 0; i < pools; i++) {
		char k[16];

		snprintf(k, sizeof(k), "pool%u", i);
		if (!conf_num(text, k, &v) || v > UINT32_MAX)
			return -EBADMSG;
		req->pools[i].payload = (uint32_t)v;
		snprintf(k, sizeof(k), "count%u", i);
		if (!conf_num(text, k, &v) || v > UINT32_MAX)
			return -EBADMSG;
		req->pools[i].count = (uint32_t)v;
		/* absent in a bus.conf of a daemon whose pools did not
		 * grow: the daemon's default growth */
		snprintf(k, sizeof(k), "max%u", i);
		if (conf_num(text, k, &v) && v <= UINT32_MAX)
			req->pools[i].max = (uint32_t)v;
	}
	return 0;
}
