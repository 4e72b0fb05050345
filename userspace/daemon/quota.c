// SPDX-License-Identifier: MIT
/*
 * quota.c - per-uid quotas: what one local user can make the daemon
 * allocate. Root's daemon serves every user, so each resource a request
 * creates is charged to a uid: buses and their bytes (to the bus's
 * creator), queues and their consumer seats (to the uid that declared
 * them, topics and subscriptions included), and open connections. A
 * charge that would pass the uid's limit is refused with -EDQUOT and a
 * reason naming the quota; charges go back when the resource goes.
 *
 * Root and the daemon's own uid are exempt: a per-user daemon serves its
 * own user only, and root can exhaust the host anyway. Every other uid
 * together is held to a second, larger share (--quota-total-share, 75%
 * by default): however many users join in, the rest of each resource
 * stays for root and the daemon's own uid.
 *
 * Defaults come from the daemon's resources: a share (--quota-share,
 * percent) of its file descriptor budget (RLIMIT_NOFILE after raising it)
 * split between the fd-holding resources (seats half; connections, two
 * fds each (the socket and the process's pidfd), a quarter; buses, two
 * fds each, the last quarter), and the same share of
 * memory (MemTotal, or the cgroup's memory.max if lower) for arena bytes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "shmbusd.h"

static const char *const names[Q__NR] = {
	[Q_BUSES] = "buses", [Q_BYTES] = "bytes", [Q_QUEUES] = "queues",
	[Q_SEATS] = "seats", [Q_CONNS] = "conns", [Q_DISK] = "disk",
};

/* One uid's use; a uid with nothing charged has no record. */
struct quota_user {
	struct quota_user *next;
	uid_t uid;
	uint64_t use[Q__NR];
};

static uint64_t limit[Q__NR];
static bool limit_set[Q__NR];
static unsigned share = QUOTA_SHARE_DEFAULT;
/* all non-exempt uids together */
static uint64_t total_limit[Q__NR], total_use[Q__NR];
static unsigned total_share = QUOTA_TOTAL_SHARE_DEFAULT;
static uid_t own_uid;
static struct quota_user *users;
static char why[200];

const char *quota_name(enum quota_res r)
{
	return names[r];
}

/* "123", "64K", "1M", "2G", "1T" (binary units), or "unlimited". */
static int parse_value(const char *s, uint64_t *v)
{
	unsigned long long n;
	char *end;

	if (!strcmp(s, "unlimited")) {
		*v = QUOTA_UNLIMITED;
		return 0;
	}
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 'T': case 't': n = n > (~0ULL >> 10) ? ~0ULL : n << 10; /* fall through */
	case 'G': case 'g': n = n > (~0ULL >> 10) ? ~0ULL : n << 10; /* fall through */
	case 'M': case 'm': n = n > (~0ULL >> 10) ? ~0ULL : n << 10; /* fall through */
	case 'K': case 'k': n = n > (~0ULL >> 10) ? ~0ULL : n << 10; end++; break;
	case '\0': break;
	default: return -EINVAL;
	}
	if (*end || n == ~0ULL)
		return -EINVAL;
	*v = n;
	return 0;
}

int quota_parse(const char *spec)
{
	char buf[256], *save = NULL, *tok;

	if (snprintf(buf, sizeof(buf), "%s", spec) >= (int)sizeof(buf))
		return -EINVAL;
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		int r;

		if (!eq)
			return -EINVAL;
		*eq = '\0';
		for (r = 0; r < Q__NR; r++)
			if (!strcmp(tok, names[r]))
				break;
		if (r == Q__NR || parse_value(eq + 1, &limit[r]))
			return -EINVAL;
		limit_set[r] = true;
	}
	return 0;
}

static int parse_share(const char *s, unsigned *out)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end || end == s || v < 1 || v > 100)
		return -EINVAL;
	*out = (unsigned)v;
	return 0;
}

int quota_set_share(const char *s)
{
	return parse_share(s, &share);
}

int quota_set_total_share(const char *s)
{
	return parse_share(s, &total_share);
}

/* The smaller of MemTotal and our cgroup's memory.max, in bytes. */
static uint64_t memory_budget(void)
{
	uint64_t mem = (uint64_t)sysconf(_SC_PHYS_PAGES) *
		       (uint64_t)sysconf(_SC_PAGESIZE);
	char path[300] = "/sys/fs/cgroup", line[256];
	unsigned long long max;
	FILE *f = fopen("/proc/self/cgroup", "r");

	if (f) {
		/* cgroup v2: "0::/some/path" */
		if (fgets(line, sizeof(line), f) && !strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max",
				 line + 3);
		}
		fclose(f);
	}
	f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%llu", &max) == 1 && max < mem)
			mem = max;
		fclose(f);
	}
	return mem;
}

/* The limits that are @pct percent of @nofile fds and @mem bytes. */
static void share_of(unsigned pct, uint64_t nofile, uint64_t mem,
		     uint64_t def[Q__NR])
{
	uint64_t fds = nofile * pct / 100;

	def[Q_SEATS] = MAX(fds / 2, 16u);
	def[Q_CONNS] = MAX(fds / 8, 8u);	/* socket + pidfd */
	def[Q_BUSES] = MAX(fds / 8, 1u);
	def[Q_BYTES] = mem / 100 * pct;
	/* journals: a bus's live messages are in its arena too; the rest
	 * is segments not yet deleted */
	def[Q_DISK] = 2 * def[Q_BYTES];
	/* every queue takes at least one seat: a quarter of the seats */
	def[Q_QUEUES] = MAX(def[Q_SEATS] / 4, 4u);
}

void quota_init(uint64_t nofile)
{
	uint64_t def[Q__NR], mem = memory_budget();

	share_of(share, nofile, mem, def);
	share_of(total_share, nofile, mem, total_limit);
	own_uid = geteuid();
	for (int r = 0; r < Q__NR; r++)
		if (!limit_set[r])
			limit[r] = def[r];
	if (own_uid != 0) {
		log_info("quotas: none (a per-user daemon serves uid %u only)",
			 own_uid);
		return;
	}
	log_info("quotas per uid (root exempt; %u%% of %llu fds and %llu "
		 "bytes unless set): buses %llu, bytes %llu, queues %llu, "
		 "seats %llu, conns %llu, disk %llu", share,
		 (unsigned long long)nofile,
		 (unsigned long long)memory_budget(),
		 (unsigned long long)limit[Q_BUSES],
		 (unsigned long long)limit[Q_BYTES],
		 (unsigned long long)limit[Q_QUEUES],
		 (unsigned long long)limit[Q_SEATS],
		 (unsigned long long)limit[Q_CONNS],
		 (unsigned long long)limit[Q_DISK]);
	log_info("quotas for all those uids together (%u%%): buses %llu, "
		 "bytes %llu, queues %llu, seats %llu, conns %llu, disk %llu",
		 total_share, (unsigned long long)total_limit[Q_BUSES],
		 (unsigned long long)total_limit[Q_BYTES],
		 (unsigned long long)total_limit[Q_QUEUES],
		 (unsigned long long)total_limit[Q_SEATS],
		 (unsigned long long)total_limit[Q_CONNS],
		 (unsigned long long)total_limit[Q_DISK]);
}

uint64_t quota_limit(enum quota_res r)
{
	return limit[r];
}

bool quota_exempt(uid_t uid)
{
	return uid == 0 || uid == own_uid;
}

static struct quota_user *user_of(uid_t uid, bool create)
{
	struct quota_user *u;

	for (u = users; u; u = u->next)
		if (u->uid == uid)
			return u;
	if (!create || !(u = calloc(1, sizeof(*u))))
		return NULL;
	u->uid = uid;
	u->next = users;
	users = u;
	return u;
}

uint64_t quota_use(uid_t uid, enum quota_res r)
{
	const struct quota_user *u = user_of(uid, false);

	return u ? u->use[r] : 0;
}

static int charge(uid_t uid, pid_t pid, enum quota_res r, uint64_t n,
		  bool loud)
{
	struct quota_user *u;

	if (quota_exempt(uid) || !n)
		return 0;
	u = user_of(uid, true);
	if (!u)
		return -ENOMEM;
	if (limit[r] != QUOTA_UNLIMITED &&
	    (n > limit[r] || u->use[r] > limit[r] - n)) {
		snprintf(why, sizeof(why),
			 "quota: %s %llu of %llu for uid %u (asked for %llu)",
			 names[r], (unsigned long long)u->use[r],
			 (unsigned long long)limit[r], uid,
			 (unsigned long long)n);
		if (loud)
			log_warn("uid %u pid %d: refused, %s", uid, (int)pid,
				 why);
		return -EDQUOT;
	}
	if (n > total_limit[r] || total_use[r] > total_limit[r] - n) {
		snprintf(why, sizeof(why),
			 "quota: %s %llu of %llu for all users but root "
			 "together (uid %u asked for %llu)", names[r],
			 (unsigned long long)total_use[r],
			 (unsigned long long)total_limit[r], uid,
			 (unsigned long long)n);
		if (loud)
			log_warn("uid %u pid %d: refused, %s", uid, (int)pid,
				 why);
		return -EDQUOT;
	}
	u->use[r] += n;
	total_use[r] += n;
	return 0;
}

int quota_charge(uid_t uid, pid_t pid, enum quota_res r, uint64_t n)
{
	return charge(uid, pid, r, n, true);
}

int quota_charge_quiet(uid_t uid, enum quota_res r, uint64_t n)
{
	return charge(uid, 0, r, n, false);
}

void quota_force(uid_t uid, enum quota_res r, uint64_t n)
{
	struct quota_user *u;

	if (quota_exempt(uid) || !n)
		return;
	u = user_of(uid, true);
	if (!u) {
		log_err("quota: out of memory charging uid %u", uid);
		return;
	}
	u->use[r] += n;
	total_use[r] += n;
	if (limit[r] != QUOTA_UNLIMITED && u->use[r] > limit[r])
		log_warn("quota: uid %u holds %llu %s, over its limit of %llu, "
			 "in buses adopted from the previous daemon", uid,
			 (unsigned long long)u->use[r], names[r],
			 (unsigned long long)limit[r]);
}

bool quota_full(uid_t uid, enum quota_res r)
{
	const struct quota_user *u = user_of(uid, false);

	if (quota_exempt(uid) || !u)
		return false;
	return (limit[r] != QUOTA_UNLIMITED && u->use[r] >= limit[r]) ||
	       total_use[r] >= total_limit[r];
}

void quota_release(uid_t uid, enum quota_res r, uint64_t n)
{
	struct quota_user **pp, *u = user_of(uid, false);

	if (quota_exempt(uid) || !n)
		return;
	if (!u || u->use[r] < n) {
		log_err("quota: releasing %llu %s uid %u does not hold",
			(unsigned long long)n, names[r], uid);
		if (u) {
			total_use[r] -= MIN(total_use[r], u->use[r]);
			u->use[r] = 0;
		}
		return;
	}
	u->use[r] -= n;
	total_use[r] -= n;
	for (int i = 0; i < Q__NR; i++)
		if (u->use[i])
			return;
	for (pp = &users; *pp != u; pp = &(*pp)->next)
		;
	*pp = u->next;
	free(u);
}

const char *quota_why(void)
{
	return why;
}

void quota_why_clear(void)
{
	why[0] = '\0';
}

void quota_free(void)
{
	while (users) {
		struct quota_user *u = users;

		users = u->next;
		free(u);
	}
}
