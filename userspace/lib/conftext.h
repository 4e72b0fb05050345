/* SPDX-License-Identifier: MIT */
/*
 * conftext.h - what the configuration files of shmbusd and shmbus-bridge
 * share: both are lines of "name = value", '#' and ';' starting a comment
 * line, blanks around names and values ignored.
 */
#ifndef SHMBUS_CONFTEXT_H
#define SHMBUS_CONFTEXT_H

#include <string.h>

/* @s without its leading and trailing blanks (and line end), in place. */
static inline char *conf_trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
			 e[-1] == '\r'))
		*--e = '\0';
	return s;
}

#endif
