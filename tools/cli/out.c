// SPDX-License-Identifier: MIT
/*
 * out.c - the output of the shmbus command: text read from a bus's
 * arena made safe to show, and writes that are checked.
 *
 * Any member of a bus can write any byte of its arena, queue names
 * included, and any producer can put any bytes in a message. Text from
 * there is shown escaped (esc()): printable ASCII as it is, a backslash
 * as "\\", every other byte (control characters, DEL, every byte of
 * 0x80..0xff, so invalid UTF-8 too) as "\xHH". A valid name (1..63
 * bytes of A-Z a-z 0-9 . _ -) shows unchanged. JSON strings and
 * Prometheus label values carry the same escaped text, with the
 * backslashes and quotes their syntax needs on top (put_quoted()): the
 * output is ASCII, parses, and a reader that undoes the JSON or label
 * escaping gets exactly what a table shows.
 *
 * Standard output is checked: at exit (cli_close_stdout(), installed by
 * main()) a buffered write that failed makes the exit status 1, and the
 * commands that consume messages write each one with write(2) to
 * completion (cli_write_all()) before they ack it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>

#include "cli.h"

const char *esc_text(char *buf, size_t cap, const void *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = s;
	size_t o = 0;

	if (!cap)
		return buf;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];
		char e[4];
		size_t k;

		if (c == '\\') {
			e[0] = '\\';
			e[1] = '\\';
			k = 2;
		} else if (c >= 0x20 && c < 0x7f) {
			e[0] = (char)c;
			k = 1;
		} else {
			e[0] = '\\';
			e[1] = 'x';
			e[2] = hex[c >> 4];
			e[3] = hex[c & 15];
			k = 4;
		}
		if (o + k >= cap)
			break;		/* only whole escapes */
		memcpy(buf + o, e, k);
		o += k;
	}
	buf[o] = '\0';
	return buf;
}

const char *esc(const char *s)
{
	/* a name is at most 63 bytes: 4 x 63 + 1 fit; eight in a row */
	static char ring[8][ESC_LEN(64)];
	static unsigned next;
	char *buf = ring[next++ % 8];

	return esc_text(buf, sizeof(ring[0]), s, strnlen(s, 64));
}

void put_quoted(FILE *f, const char *s)
{
	/* up to 96 bytes: a label of another user's bus, OWNER:NAME */
	char buf[ESC_LEN(96)];

	esc_text(buf, sizeof(buf), s, strnlen(s, 96));
	for (const char *p = buf; *p; p++) {
		if (*p == '\\' || *p == '"')
			fputc('\\', f);
		fputc(*p, f);
	}
}

void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	put_quoted(f, s);
	fputc('"', f);
}

int cli_write_all(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t w = writev(fd, iov, n);

		if (w < 0) {
			/* a stop signal ends a write that blocks (a reader
			 * that does not read), as it ends a wait */
			if (errno == EINTR && !cli_interrupted())
				continue;
			return -errno;
		}
		/* step over what went out, whole and partial vectors */
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

void cli_std_fds(void)
{
	/*
	 * A program started with 0, 1 or 2 closed would hand that number to
	 * the next file it opens (the daemon's socket, read as stdin or
	 * written as stdout). Each closed one is taken by /dev/null opened
	 * the wrong way round, so that it still behaves as a closed one:
	 * reading the stdin fails, writing the stdout fails (EBADF).
	 */
	for (int fd = 0; fd < 3; fd++) {
		int got;

		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		got = open("/dev/null", fd == 0 ? O_WRONLY : O_RDONLY);
		if (got != fd)
			_exit(127);	/* nowhere to say so */
	}
}

void cli_close_stdout(void)
{
	/* a write that failed before left its errno, most likely */
	int err = 0, before = errno;

	errno = 0;
	if (fflush(stdout))
		err = errno;
	if (ferror(stdout) && !err)
		err = before ? before : EIO;
	if (fclose(stdout) && !err)
		err = errno ? errno : EIO;
	if (err) {
		const char *cmd = cli_command();
		bool top = !strcmp(cmd, "shmbus");

		fprintf(stderr, "shmbus: %s%swrite error on standard output: "
			"%s\n", top ? "" : cmd, top ? "" : ": ", strerror(err));
		_exit(1);
	}
}
