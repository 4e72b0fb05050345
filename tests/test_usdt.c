// SPDX-License-Identifier: MIT
/*
 * test_usdt.c - the USDT probes of libshmbus.so, attached the way a
 * tracer does it, without one: read the probes from the library's
 * .note.stapsdt ELF notes, open a uprobe perf event on each (with the
 * probe's semaphore as ref_ctr_offset, so the kernel turns the probe on),
 * run known traffic in this process, and compare every probe's hit count
 * with it. Also:
 * no tracer attached, every semaphore reads 0 (the probes cost a load);
 * the daemon's journal_sync, attached in a daemon with a state directory,
 * fires once for every sync the bus counts.
 *
 * Needs root (or perf_event_paranoid <= 1) and the uprobe PMU; skips
 * otherwise, and fails instead under CI=true.
 */
#include <elf.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "shmbus.h"
#include "shmbus/layout.h"
#include "libpath.h"
#include "helpers.h"

#define BUS	"usdt"
#define MAXP	64

struct probe {
	char name[32];
	uint64_t off;		/* file offset of the probe's nop */
	uint64_t sem_off;	/* file offset of its semaphore, 0 = none */
	uint64_t sem_vaddr;	/* link-time address of the semaphore */
	int fd;			/* perf event */
	int nargs;		/* argument specs in the note */
	char args[160];		/* the specs: "-4@%eax 8@-16(%rbp) ..." */
};

static struct probe probes[MAXP];
static int nprobes;
static char lib_path[PATH_MAX];

/* The path of the libshmbus.so this process runs with. */

/* Link-time address -> file offset, through the PT_LOAD headers. */
static uint64_t file_off(const Elf64_Ehdr *eh, uint64_t vaddr)
{
	const Elf64_Phdr *ph = (const void *)((const uint8_t *)eh + eh->e_phoff);

	for (int i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && vaddr >= ph[i].p_vaddr &&
		    vaddr < ph[i].p_vaddr + ph[i].p_filesz)
			return vaddr - ph[i].p_vaddr + ph[i].p_offset;
	return 0;
}

/* Read the shmbus provider's probes from the stapsdt notes. */
static void read_probes(void)
{
	struct stat st;
	const uint8_t *map;
	const Elf64_Ehdr *eh;
	const Elf64_Shdr *sh;
	int fd;

	shmbus_libpath(lib_path);
	assert_true(lib_path[0]);
	fd = open(lib_path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	map = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	assert_true(map != MAP_FAILED);
	close(fd);
	eh = (const Elf64_Ehdr *)map;
	sh = (const Elf64_Shdr *)(map + eh->e_shoff);
	for (int i = 0; i < eh->e_shnum; i++) {
		const uint8_t *p, *end;

		if (sh[i].sh_type != SHT_NOTE)
			continue;
		p = map + sh[i].sh_offset;
		end = p + sh[i].sh_size;
		while (p + sizeof(Elf64_Nhdr) <= end) {
			const Elf64_Nhdr *nh = (const void *)p;
			const char *name = (const char *)(nh + 1);
			const uint8_t *desc = (const uint8_t *)name +
					      ((nh->n_namesz + 3) & ~3u);
			uint64_t pc, sem;
			const char *prov, *pname;

			p = desc + ((nh->n_descsz + 3) & ~3u);
			if (nh->n_type != 3 || strcmp(name, "stapsdt"))
				continue;
			memcpy(&pc, desc, 8);
			memcpy(&sem, desc + 16, 8);
			prov = (const char *)desc + 24;
			pname = prov + strlen(prov) + 1;
			if (strcmp(prov, "shmbus") || nprobes == MAXP)
				continue;
			snprintf(probes[nprobes].name, sizeof(probes[0].name),
				 "%s", pname);
			probes[nprobes].off = file_off(eh, pc);
			probes[nprobes].sem_vaddr = sem;
			probes[nprobes].sem_off = sem ? file_off(eh, sem) : 0;
			probes[nprobes].fd = -1;
			/* "-4@%eax 8@-16(%rbp) ...": one spec per word */
			snprintf(probes[nprobes].args,
				 sizeof(probes[0].args), "%s",
				 pname + strlen(pname) + 1);
			for (const char *a = pname + strlen(pname) + 1; *a; a++)
				if (*a != ' ' && (a[1] == ' ' || !a[1]))
					probes[nprobes].nargs++;
			nprobes++;
		}
	}
	munmap((void *)map, st.st_size);
}

static int uprobe_type(void)
{
	FILE *f = fopen("/sys/bus/event_source/devices/uprobe/type", "r");
	int t = -1;

	if (f) {
		if (fscanf(f, "%d", &t) != 1)
			t = -1;
		fclose(f);
	}
	return t;
}

/* Open a counting uprobe on probe @i in process @pid (0: this one);
 * returns -errno on failure. */
static int attach_one(int type, int i, pid_t pid)
{
	struct perf_event_attr attr = {
		.size = sizeof(attr),
		.type = (uint32_t)type,
		/* config bits 32-63: ref_ctr_offset (the semaphore) */
		.config = probes[i].sem_off << 32,
		.config1 = (uint64_t)(uintptr_t)lib_path,
		.config2 = probes[i].off,
		/* no inherit: this process's hits only (an inherited
		 * uprobe event names its path by a pointer into our
		 * memory, which an exec'd child cannot copy when it
		 * forks in turn: EFAULT) */
	};
	int fd = (int)syscall(SYS_perf_event_open, &attr, pid, -1, -1,
			      PERF_FLAG_FD_CLOEXEC);

	if (fd < 0)
		return -errno;
	probes[i].fd = fd;
	return 0;
}

/* Open a counting uprobe on every probe; returns -errno on failure. */
static int attach_all(void)
{
	int type = uprobe_type();

	if (type < 0)
		return -ENODEV;
	for (int i = 0; i < nprobes; i++) {
		int err = attach_one(type, i, 0);

		if (err)
			return err;
	}
	return 0;
}

static uint64_t hits(const char *name)
{
	uint64_t total = 0;

	for (int i = 0; i < nprobes; i++) {
		uint64_t v = 0;

		if (strcmp(probes[i].name, name))
			continue;
		assert_int_equal(read(probes[i].fd, &v, sizeof(v)), sizeof(v));
		total += v;
	}
	return total;
}

/* The semaphores of this process's copy of the library. */
static unsigned short semaphore(const struct probe *p)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");
	uint64_t base = 0;

	/* the lowest mapping of the library is its load base */
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, off;

		if (strstr(line, lib_path) &&
		    sscanf(line, "%lx-%*x %*s %lx", &lo, &off) == 2 && off == 0) {
			base = lo;
			break;
		}
	}
	if (f)
		fclose(f);
	assert_true(base != 0);
	return READ_ONCE(*(unsigned short *)(uintptr_t)(base + p->sem_vaddr));
}

/* The size in bytes of argument @i (0-based) of @p, from its spec. */
static int arg_size(const struct probe *p, int i)
{
	const char *a = p->args;

	while (i-- > 0 && (a = strchr(a, ' ')))
		a++;
	if (!a)
		return 0;
	return abs(atoi(a));	/* "-4@..." signed, "8@..." unsigned */
}

static void test_probes_count_traffic(void **state)
{
	enum { N = 1000 };
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_deliveries = 2,
		    .dead_letter_queue = "usdt.dlq");
	struct shmbus *bus;
	struct shmbus_producer *p;
	struct shmbus_consumer *c;
	struct shmbus_msg m;
	/* every probe, with its number of arguments (docs/probes.md; the
	 * first two are always bus id and queue id) */
	const char *want[] = { "queue_declare", "queue_delete", "publish",
			       "deliver", "ack", "nack", "redeliver",
			       "dead_letter", "expire", "drop", "checksum",
			       "sleep", "wake_sent", "wake_recv",
			       "pub_blocked", "journal_sync" };
	const int want_args[] = { 5, 4, 6, 6, 4, 4, 4, 4, 3, 3, 5, 4, 4, 4,
				  6, 5 };
	int err;
	pid_t kid;

	(void)state;
	read_probes();
	print_message("%d probes in %s\n", nprobes, lib_path);
	for (unsigned i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		bool found = false;

		for (int k = 0; k < nprobes; k++) {
			if (strcmp(probes[k].name, want[i]))
				continue;
			found = true;
			if (probes[k].nargs != want_args[i])
				fail_msg("probe %s has %d arguments, not %d",
					 want[i], probes[k].nargs, want_args[i]);
			/* a message id is 8 bytes at every site: a chunk
			 * ref (4 bytes) is not an id */
			if (i >= 2 && i <= 10 && arg_size(&probes[k], 2) != 8)
				fail_msg("probe %s: argument 3 (the message "
					 "id) is %s", want[i], probes[k].args);
		}
		if (!found)
			fail_msg("no probe %s", want[i]);
	}
	/* nobody attached: every semaphore is 0, every probe is off */
	for (int i = 0; i < nprobes; i++) {
		assert_true(probes[i].sem_off != 0);
		assert_int_equal(semaphore(&probes[i]), 0);
	}
	bus = t_open_bus(BUS);
	err = attach_all();
	if (err == -EACCES || err == -EPERM || err == -ENODEV ||
	    err == -ENOENT || err == -EOPNOTSUPP)
		SKIP_OR_FAIL("uprobes unavailable: %s", strerror(-err));
	assert_int_equal(err, 0);
	for (int i = 0; i < nprobes; i++)
		assert_true(semaphore(&probes[i]) > 0);

	assert_int_equal(shmbus__queue_declare(bus, "usdt.dlq", NULL), 1);
	assert_int_equal(shmbus__queue_declare(bus, "usdt", &qo), 1);
	p = shmbus_producer__new(bus, "usdt", NULL);
	c = shmbus_consumer__new(bus, "usdt", NULL);
	assert_non_null(p);
	assert_non_null(c);
	for (int i = 0; i < N; i++)
		t_publish_int(p, i, NULL);
	/* 900 acked; 100 nacked twice: redelivered once, then the DLQ */
	for (int i = 0; i < N; i++) {
		int v = t_recv_int(c, &m, 0);

		if (v % 10 == 9 && m.delivery_count < 2)
			assert_int_equal(shmbus_consumer__nack(c, &m, 0), 0);
		else if (v % 10 == 9)
			assert_int_equal(shmbus_consumer__nack(c, &m, 0), 0);
		else
			assert_int_equal(shmbus_consumer__ack(c, &m), 0);
		if (v % 10 == 9 && m.delivery_count < 2)
			i--;	/* it comes round again */
	}
	/* one expired message (TTL) behind one without: dropped at take
	 * (the daemon expires only what is at the head) */
	{
		SHMBUS_OPTS(shmbus_pub_opts, ttl, .ttl_ns = 1000000);

		t_publish_int(p, -2, NULL);
		t_publish_int(p, -1, &ttl);
		usleep(20000);
		assert_int_equal(t_recv_int(c, &m, 0), -2);
		assert_int_equal(shmbus_consumer__ack(c, &m), 0);
		assert_int_equal(shmbus_consumer__try_receive(c, &m), -EAGAIN);
	}
	/* we sleep, a child's publish wakes us */
	if (!(kid = fork())) {
		struct shmbus *b = t_open_bus(BUS);
		struct shmbus_producer *pp = shmbus_producer__new(b, "usdt", NULL);
		int v = 7;

		CHILD_CHECK(pp, "producer");
		usleep(200000);
		CHILD_CHECK(!shmbus_producer__publish(pp, &v, sizeof(v), NULL),
			    "publish");
		shmbus_producer__free(pp);
		_exit(0);
	}
	assert_int_equal(t_recv_int(c, &m, 5000000000LL), 7);
	assert_int_equal(shmbus_consumer__ack(c, &m), 0);
	assert_int_equal(t_wait(kid, 5000), 0);
	/* a child sleeps, our publish wakes it */
	if (!(kid = fork())) {
		struct shmbus *b = t_open_bus(BUS);
		SHMBUS_OPTS(shmbus_consumer_opts, co, .spin_ns = -1);
		struct shmbus_consumer *cc = shmbus_consumer__new(b, "usdt.dlq",
								  &co);
		struct shmbus_msg cm;

		CHILD_CHECK(cc, "consumer");
		/* the 100 dead-lettered ones first */
		for (int i = 0; i < 100; i++)
			CHILD_CHECK(!shmbus_consumer__receive_view(cc, &cm,
					5000000000LL) &&
				    !shmbus_consumer__ack(cc, &cm), "drain");
		CHILD_CHECK(!shmbus_consumer__receive_view(cc, &cm,
					5000000000LL), "woken");
		_exit(0);
	}
	usleep(300000);		/* it is asleep by now */
	{
		struct shmbus_producer *pd = shmbus_producer__new(bus, "usdt.dlq",
								  NULL);

		assert_non_null(pd);
		t_publish_int(pd, 8, NULL);
		shmbus_producer__free(pd);
	}
	assert_int_equal(t_wait(kid, 5000), 0);
	/* a checksummed queue: a payload byte flipped in the arena */
	{
		SHMBUS_OPTS(shmbus_queue_opts, sq, .flags = SHMBUS_QUEUE_CHECKSUM,
			    .dead_letter_queue = "usdt.dlq");
		struct shmbus_producer *ps;
		struct shmbus_consumer *cs;
		struct shmbus_queue_info qi;
		uint8_t *base = t_arena_mapping(BUS);
		const struct shmbus_sb *sb = (const void *)base;
		const struct shmbus_queue *q;
		const struct shmbus_pool *pl;
		uint32_t ref, i, cap;

		assert_non_null(base);
		assert_int_equal(shmbus__queue_declare(bus, "usdt.sum", &sq), 1);
		assert_int_equal(shmbus__queue_info(bus, "usdt.sum", &qi), 0);
		ps = shmbus_producer__new(bus, "usdt.sum", NULL);
		cs = shmbus_consumer__new(bus, "usdt.sum", NULL);
		assert_non_null(ps);
		assert_non_null(cs);
		t_publish_int(ps, 5, NULL);
		q = (const struct shmbus_queue *)(base + sb->qdir_off) + qi.id;
		cap = q->ring_cap;
		i = (uint32_t)q->head & (cap - 1);
		if (cap >= 16)
			i = (i % (cap / 8)) * 8 + i / (cap / 8);
		ref = SHMBUS_CELL_REF(((const struct shmbus_cell *)
				       (base + q->ring_off))[i].v);
		pl = (const struct shmbus_pool *)(base + sb->pool_off) +
		     SHMBUS_REF_POOL(ref);
		base[pl->base_off + (uint64_t)SHMBUS_REF_IDX(ref) * pl->chunk_size +
		     SHMBUS_CHUNK_HDR] ^= 1;
		assert_int_equal(shmbus_consumer__try_receive(cs, &m), -EAGAIN);
		shmbus_consumer__free(cs);
		shmbus_producer__free(ps);
	}
	shmbus_consumer__free(c);
	shmbus_producer__free(p);
	assert_int_equal(shmbus__queue_delete(bus, "usdt"), 0);
	shmbus__close(bus);

	print_message("publish %lu deliver %lu ack %lu nack %lu redeliver %lu "
		      "expire %lu drop %lu sleep %lu wake_sent %lu wake_recv "
		      "%lu declare %lu delete %lu checksum %lu\n",
		      (unsigned long)hits("publish"), (unsigned long)hits("deliver"),
		      (unsigned long)hits("ack"), (unsigned long)hits("nack"),
		      (unsigned long)hits("redeliver"), (unsigned long)hits("expire"),
		      (unsigned long)hits("drop"), (unsigned long)hits("sleep"),
		      (unsigned long)hits("wake_sent"),
		      (unsigned long)hits("wake_recv"),
		      (unsigned long)hits("queue_declare"),
		      (unsigned long)hits("queue_delete"),
		      (unsigned long)hits("checksum"));
	assert_int_equal(hits("queue_declare"), 3);
	assert_int_equal(hits("checksum"), 1);
	assert_int_equal(hits("queue_delete"), 1);
	/* ours: N, the two TTL ones, the one that wakes the child, the
	 * checksummed one */
	assert_int_equal(hits("publish"), N + 4);
	/* N, 100 redeliveries, the one before the expired, the child's */
	assert_int_equal(hits("deliver"), N + 100 + 2);
	assert_int_equal(hits("redeliver"), 100);
	assert_int_equal(hits("ack"), N - 100 + 2);
	assert_int_equal(hits("nack"), 200);
	assert_int_equal(hits("expire"), 1);
	assert_int_equal(hits("drop"), 1);	/* the expired one */
	assert_true(hits("sleep") >= 1);
	assert_true(hits("wake_sent") >= 1);	/* our publish to the child */
	assert_true(hits("wake_recv") >= 1);
	for (int i = 0; i < nprobes; i++)
		close(probes[i].fd);
	/* detached: the kernel turned the probes off again */
	for (int i = 0; i < nprobes; i++)
		assert_int_equal(semaphore(&probes[i]), 0);
}

/* journal_sync fires in the daemon (through the library it links): one
 * hit per sync of a durable queue's journal, as many as the bus counts
 * in its superblock. */
static void test_journal_sync_probe(void **state)
{
	enum { N = 20 };
	SHMBUS_OPTS(shmbus_queue_opts, qo, .flags = SHMBUS_QUEUE_DURABLE);
	SHMBUS_OPTS(shmbus_bus_journal_info, bj);
	char sock[96], dir[96];
	struct shmbus_producer *p;
	struct shmbus *bus;
	int k = -1, err;
	pid_t pid;

	(void)state;
	if (!nprobes)
		read_probes();
	for (int i = 0; i < nprobes; i++)
		if (!strcmp(probes[i].name, "journal_sync"))
			k = i;
	assert_true(k >= 0);
	snprintf(sock, sizeof(sock), "%s/j.sock", t_dir);
	snprintf(dir, sizeof(dir), "%s/state", t_dir);
	pid = t_daemon_start_state(sock, dir, NULL);
	assert_true(pid > 0);
	err = uprobe_type() < 0 ? -ENODEV : attach_one(uprobe_type(), k, pid);
	if (err == -EACCES || err == -EPERM || err == -ENODEV ||
	    err == -ENOENT || err == -EOPNOTSUPP) {
		kill(pid, SIGKILL);
		SKIP_OR_FAIL("uprobes unavailable: %s", strerror(-err));
	}
	assert_int_equal(err, 0);
	{
		SHMBUS_OPTS(shmbus_open_opts, o, .socket_path = sock,
			    .flags = SHMBUS_OPEN_NOSTART);

		bus = shmbus__open("usdtj", &o);
	}
	assert_non_null(bus);
	assert_int_equal(shmbus__queue_declare(bus, "dur", &qo), 1);
	/* each publish waits for its confirm: a sync each (sync always) */
	p = shmbus_producer__new(bus, "dur", NULL);
	assert_non_null(p);
	for (int i = 0; i < N; i++)
		t_publish_int(p, i, NULL);
	shmbus_producer__free(p);
	usleep(200000);		/* nothing more to sync */
	assert_int_equal(shmbus__bus_journal(bus, &bj), 0);
	print_message("journal_sync %lu, the bus's syncs %llu\n",
		      (unsigned long)hits("journal_sync"),
		      (unsigned long long)bj.syncs);
	assert_true(bj.syncs >= N);
	assert_int_equal(hits("journal_sync"), bj.syncs);
	close(probes[k].fd);
	probes[k].fd = -1;
	shmbus__close(bus);
	kill(pid, SIGTERM);
	for (int i = 0; i < 10000 && t_pid_running(pid); i++)
		usleep(1000);
}

/* pub_blocked fires when a publish starts waiting for room and when it
 * stops: a wait that times out, and one a consumer ends, each twice; a
 * publish that does not wait (timeout 0), never. */
static void test_pub_blocked_probe(void **state)
{
	SHMBUS_OPTS(shmbus_queue_opts, qo, .max_len = 2);
	SHMBUS_OPTS(shmbus_pub_opts, wait30, .timeout_ns = 30 * 1000000LL);
	SHMBUS_OPTS(shmbus_pub_opts, wait5s, .timeout_ns = 5000000000LL);
	struct shmbus_producer *p;
	struct shmbus *bus;
	int sites = 0, n = 0, v = 0, err = 0;
	pid_t kid;

	(void)state;
	if (!nprobes)
		read_probes();
	/* one probe per site: the queue's wait, the pools' wait, a
	 * subscription's wait, each with a begin and an end */
	for (int i = 0; i < nprobes && !err; i++) {
		if (strcmp(probes[i].name, "pub_blocked"))
			continue;
		sites++;
		err = uprobe_type() < 0 ? -ENODEV :
		      attach_one(uprobe_type(), i, 0);
	}
	assert_true(sites >= 2);
	if (err == -EACCES || err == -EPERM || err == -ENODEV ||
	    err == -ENOENT || err == -EOPNOTSUPP)
		SKIP_OR_FAIL("uprobes unavailable: %s", strerror(-err));
	assert_int_equal(err, 0);
	bus = t_open_bus(BUS);
	assert_int_equal(shmbus__queue_declare(bus, "usdt.full", &qo), 1);
	p = shmbus_producer__new(bus, "usdt.full", NULL);
	assert_non_null(p);
	while (shmbus_producer__publish(p, &v, sizeof(v), NULL) == 0)
		n++;
	assert_int_equal(n, 2);
	assert_int_equal(hits("pub_blocked"), 0);
	assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), &wait30),
			 -ENOBUFS);
	assert_int_equal(hits("pub_blocked"), 2);
	fflush(NULL);
	kid = fork();
	assert_true(kid >= 0);
	if (!kid) {	/* takes one 200 ms later: room for the waiter */
		struct shmbus *b;
		struct shmbus_consumer *c;
		struct shmbus_msg m;

		usleep(200000);
		b = t_open_bus(BUS);
		c = b ? shmbus_consumer__new(b, "usdt.full", NULL) : NULL;
		if (!c || shmbus_consumer__receive_view(c, &m, 0) ||
		    shmbus_consumer__ack(c, &m))
			_exit(1);
		_exit(0);
	}
	assert_int_equal(shmbus_producer__publish(p, &v, sizeof(v), &wait5s),
			 0);
	assert_int_equal(t_wait(kid, 10000), 0);
	print_message("pub_blocked: %lu hits for 2 waits\n",
		      (unsigned long)hits("pub_blocked"));
	assert_int_equal(hits("pub_blocked"), 4);
	for (int i = 0; i < nprobes; i++) {
		if (strcmp(probes[i].name, "pub_blocked"))
			continue;
		close(probes[i].fd);
		probes[i].fd = -1;
	}
	shmbus_producer__free(p);
	assert_int_equal(shmbus__queue_delete(bus, "usdt.full"), 0);
	shmbus__close(bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probes_count_traffic),
		cmocka_unit_test(test_journal_sync_probe),
		cmocka_unit_test(test_pub_blocked_probe),
	};

	return T_RUN_WITH_DAEMON("usdt", tests);
}
