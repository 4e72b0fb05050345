// SPDX-License-Identifier: MIT
/*
 * policy.c - who may do what on which bus: the policy file (read at start
 * and on SIGHUP) and the one decision every request goes through.
 *
 * A rule per line, '#' to the end of a line is a comment:
 *
 *	allow|deny  WHO  OPERATIONS  BUSES
 *
 *	WHO         user:NAME|UID, group:NAME|GID (primary or supplementary),
 *	            owner (the bus's owner), other (anyone else), * (anyone)
 *	OPERATIONS  comma-separated create, configure, publish, consume; or *
 *	BUSES       [OWNER:]GLOB: bus names matching GLOB (fnmatch(3): *, ?,
 *	            [...]) in the namespace of OWNER (a user name or uid, or
 *	            *); without OWNER: in every namespace
 *
 * The first rule that matches (file order) decides. When none does, the
 * default decides, which is the behaviour without a policy: anyone may
 * create buses in their own namespace, the owner configures, the mode
 * bits give publish (w) and consume (r) to owner, group and other. Root
 * is always allowed. A file that cannot be parsed is refused whole, with
 * its file:line.
 */
#include <ctype.h>
#include <fnmatch.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmbusd.h"

enum who { WHO_ANY, WHO_USER, WHO_GROUP, WHO_OWNER, WHO_OTHER };

struct rule {
	bool allow;
	enum who who;
	uint32_t id;		/* WHO_USER: uid, WHO_GROUP: gid */
	unsigned ops;		/* 1 << POLICY_* */
	bool any_owner;		/* BUSES without OWNER, or "*:" */
	uid_t owner;
	char glob[SHMBUS_NAME_MAX];
	unsigned line;
};

struct policy {
	char *path;
	struct rule *rules;
	unsigned n;
};

static const char *const op_names[POLICY__OP_MAX] = {
	[POLICY_CREATE] = "create",
	[POLICY_CONFIGURE] = "configure",
	[POLICY_PUBLISH] = "publish",
	[POLICY_CONSUME] = "consume",
};

const char *policy_op_name(enum policy_op op)
{
	return op < POLICY__OP_MAX ? op_names[op] : "?";
}

void policy_free(struct policy *pol)
{
	if (!pol)
		return;
	free(pol->path);
	free(pol->rules);
	free(pol);
}

/* A decimal id (no sign, no trailing garbage): 0, or -EINVAL. */
static int parse_id(const char *s, uint32_t *out)
{
	unsigned long v;
	char *end;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v >= UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int parse_user(const char *s, uint32_t *uid)
{
	struct passwd *pw;

	if (!parse_id(s, uid))
		return 0;
	pw = getpwnam(s);
	if (!pw)
		return -ENOENT;
	*uid = pw->pw_uid;
	return 0;
}

static int parse_group(const char *s, uint32_t *gid)
{
	struct group *gr;

	if (!parse_id(s, gid))
		return 0;
	gr = getgrnam(s);
	if (!gr)
		return -ENOENT;
	*gid = gr->gr_gid;
	return 0;
}

static int parse_who(struct rule *r, const char *s, char *err, size_t len)
{
	if (!strcmp(s, "*")) {
		r->who = WHO_ANY;
	} else if (!strcmp(s, "owner")) {
		r->who = WHO_OWNER;
	} else if (!strcmp(s, "other")) {
		r->who = WHO_OTHER;
	} else if (!strncmp(s, "user:", 5)) {
		r->who = WHO_USER;
		if (parse_user(s + 5, &r->id)) {
			snprintf(err, len, "no user '%s'", s + 5);
			return -EINVAL;
		}
	} else if (!strncmp(s, "group:", 6)) {
		r->who = WHO_GROUP;
		if (parse_group(s + 6, &r->id)) {
			snprintf(err, len, "no group '%s'", s + 6);
			return -EINVAL;
		}
	} else {
		snprintf(err, len, "who '%s': want user:NAME|UID, "
			 "group:NAME|GID, owner, other or *", s);
		return -EINVAL;
	}
	return 0;
}

static int parse_ops(struct rule *r, char *s, char *err, size_t len)
{
	char *save = NULL;

	if (!strcmp(s, "*")) {
		r->ops = (1u << POLICY__OP_MAX) - 1;
		return 0;
	}
	for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		unsigned op;

		for (op = 0; op < POLICY__OP_MAX; op++)
			if (!strcmp(t, op_names[op]))
				break;
		if (op == POLICY__OP_MAX) {
			snprintf(err, len, "operation '%s': want create, "
				 "configure, publish, consume or *", t);
			return -EINVAL;
		}
		r->ops |= 1u << op;
	}
	if (!r->ops) {
		snprintf(err, len, "no operation");
		return -EINVAL;
	}
	return 0;
}

/* A bus-name glob: the characters of a name, and * ? [ ] ! */
static bool glob_valid(const char *g)
{
	if (!*g || strlen(g) >= SHMBUS_NAME_MAX)
		return false;
	for (; *g; g++)
		if (!isalnum((unsigned char)*g) && !strchr("._-*?[]!", *g))
			return false;
	return true;
}

static int parse_buses(struct rule *r, const char *s, char *err, size_t len)
{
	const char *colon = strchr(s, ':');
	const char *glob = colon ? colon + 1 : s;

	r->any_owner = true;
	if (colon) {
		char owner[SHMBUS_NAME_MAX];

		if ((size_t)(colon - s) >= sizeof(owner) || colon == s) {
			snprintf(err, len, "buses '%s': bad owner", s);
			return -EINVAL;
		}
		memcpy(owner, s, colon - s);
		owner[colon - s] = '\0';
		if (strcmp(owner, "*")) {
			r->any_owner = false;
			if (parse_user(owner, &r->owner)) {
				snprintf(err, len, "no user '%s'", owner);
				return -EINVAL;
			}
		}
	}
	if (!glob_valid(glob)) {
		snprintf(err, len, "buses '%s': want [OWNER:]GLOB, GLOB of "
			 "[A-Za-z0-9._-*?[]!], 1-63 bytes", s);
		return -EINVAL;
	}
	strcpy(r->glob, glob);
	return 0;
}

/* One line into @r: 1 a rule, 0 nothing (blank, comment), -EINVAL. */
static int parse_line(char *line, struct rule *r, char *err, size_t len)
{
	char *f[5], *save = NULL;
	int n = 0;

	line[strcspn(line, "#\n")] = '\0';
	for (char *t = strtok_r(line, " \t\r", &save); t && n < 5;
	     t = strtok_r(NULL, " \t\r", &save))
		f[n++] = t;
	if (!n)
		return 0;
	if (n != 4) {
		snprintf(err, len, "want 'allow|deny WHO OPERATIONS BUSES'");
		return -EINVAL;
	}
	memset(r, 0, sizeof(*r));
	if (!strcmp(f[0], "allow")) {
		r->allow = true;
	} else if (strcmp(f[0], "deny")) {
		snprintf(err, len, "'%s': want allow or deny", f[0]);
		return -EINVAL;
	}
	if (parse_who(r, f[1], err, len) || parse_ops(r, f[2], err, len) ||
	    parse_buses(r, f[3], err, len))
		return -EINVAL;
	return 1;
}

int policy_load(const char *path, bool must_exist, struct policy **out,
		char *err, size_t len)
{
	struct policy *pol = calloc(1, sizeof(*pol));
	unsigned lineno = 0, cap = 0;
	char line[512];
	FILE *f;
	int rc = 0;

	*out = NULL;
	if (!pol || !(pol->path = strdup(path))) {
		policy_free(pol);
		snprintf(err, len, "%s: out of memory", path);
		return -ENOMEM;
	}
	f = fopen(path, "re");
	if (!f) {
		rc = -errno;
		if (rc == -ENOENT && !must_exist) {
			*out = pol;	/* absent: no rules */
			return 0;
		}
		snprintf(err, len, "%s: %s", path, strerror(-rc));
		policy_free(pol);
		return rc;
	}
	while (fgets(line, sizeof(line), f)) {
		struct rule r;
		char why[160];
		int k;

		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(err, len, "%s:%u: line too long", path, lineno);
			rc = -EINVAL;
			break;
		}
		k = parse_line(line, &r, why, sizeof(why));
		if (k < 0) {
			snprintf(err, len, "%s:%u: %s", path, lineno, why);
			rc = -EINVAL;
			break;
		}
		if (!k)
			continue;
		r.line = lineno;
		if (pol->n == cap) {
			struct rule *nr;

			cap = cap ? 2 * cap : 16;
			nr = realloc(pol->rules, cap * sizeof(*nr));
			if (!nr) {
				snprintf(err, len, "%s: out of memory", path);
				rc = -ENOMEM;
				break;
			}
			pol->rules = nr;
		}
		pol->rules[pol->n++] = r;
	}
	if (!rc && ferror(f)) {
		rc = -EIO;
		snprintf(err, len, "%s: read error", path);
	}
	fclose(f);
	if (rc) {
		policy_free(pol);
		return rc;
	}
	*out = pol;
	return 0;
}

unsigned policy_rules(const struct policy *pol)
{
	return pol ? pol->n : 0;
}

static bool in_group(const struct peer *p, gid_t gid)
{
	if (p->gid == gid)
		return true;
	for (int i = 0; i < p->ngroups; i++)
		if (p->groups[i] == gid)
			return true;
	return false;
}

static bool rule_matches(const struct rule *r, const struct peer *p,
			 const struct bus_ref *bus, enum policy_op op)
{
	if (!(r->ops & (1u << op)))
		return false;
	switch (r->who) {
	case WHO_ANY: break;
	case WHO_USER: if (p->uid != r->id) return false; break;
	case WHO_GROUP: if (!in_group(p, r->id)) return false; break;
	case WHO_OWNER: if (p->uid != bus->owner_uid) return false; break;
	case WHO_OTHER: if (p->uid == bus->owner_uid) return false; break;
	}
	if (!r->any_owner && r->owner != bus->owner_uid)
		return false;
	return fnmatch(r->glob, bus->name, 0) == 0;
}

/* What the mode bits give @p on @bus: 4 r, 2 w (as chmod). */
static unsigned mode_bits(const struct bus_ref *bus, const struct peer *p)
{
	if (p->uid == bus->owner_uid)
		return (bus->mode >> 6) & 7;
	if (in_group(p, bus->owner_gid))
		return (bus->mode >> 3) & 7;
	return bus->mode & 7;
}

int policy_check(const struct policy *pol, const struct peer *p,
		 const struct bus_ref *bus, enum policy_op op,
		 char *why, size_t len)
{
	bool ok;

	if (p->uid == 0)
		return 0;
	for (unsigned i = 0; pol && i < pol->n; i++) {
		const struct rule *r = &pol->rules[i];

		if (!rule_matches(r, p, bus, op))
			continue;
		if (r->allow)
			return 0;
		snprintf(why, len, "%s on bus %u:%s refused to uid %u by "
			 "policy rule %s:%u", op_names[op], bus->owner_uid,
			 bus->name, p->uid, pol->path, r->line);
		return -EACCES;
	}
	switch (op) {
	case POLICY_CREATE:	/* only ever in the caller's own namespace */
		ok = p->uid == bus->owner_uid;
		break;
	case POLICY_CONFIGURE:
		ok = p->uid == bus->owner_uid;
		break;
	case POLICY_PUBLISH:
		ok = mode_bits(bus, p) & 2;
		break;
	default:
		ok = mode_bits(bus, p) & 4;
		break;
	}
	if (ok)
		return 0;
	if (op == POLICY_CREATE || op == POLICY_CONFIGURE)
		snprintf(why, len, "%s on bus %u:%s refused to uid %u: only "
			 "its owner (uid %u) may (no policy rule allows it)",
			 op_names[op], bus->owner_uid, bus->name, p->uid,
			 bus->owner_uid);
	else
		snprintf(why, len, "%s on bus %u:%s refused to uid %u: bus "
			 "mode %04o gives it no %c (no policy rule allows it)",
			 op_names[op], bus->owner_uid, bus->name, p->uid,
			 bus->mode, op == POLICY_PUBLISH ? 'w' : 'r');
	return -EACCES;
}

int daemon_policy_reload(struct daemon *d)
{
	struct policy *pol;
	char err[320];
	int rc;

	if (!d->policy_path)
		return 0;
	rc = policy_load(d->policy_path, d->policy_must, &pol, err,
			 sizeof(err));
	if (rc) {
		log_err("policy %s%s", err, d->policy ?
			"; keeping the policy in force" : "");
		return rc;
	}
	policy_free(d->policy);
	d->policy = pol;
	log_info("policy %s: %u rules", d->policy_path, policy_rules(pol));
	return 0;
}
