/*
 * Debian version ordering as deb-version(7) defines it: epoch, then upstream
 * and revision compared with dpkg's lexical/numeric alternation where '~'
 * sorts before everything, even the end of the string.
 */
#include "image_int.h"

#include "payguard/error.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

struct ver {
	unsigned long epoch;
	const char *up, *up_end;
	const char *rev, *rev_end;
};

static int
order(int c)
{
	if (isdigit(c))
		return 0;
	if (isalpha(c))
		return c;
	if (c == '~')
		return -1;
	if (c)
		return c + 256;
	return 0;
}

/* Compares [a, ae) with [b, be) the way dpkg's verrevcmp does. */
static int
verrevcmp(const char *a, const char *ae, const char *b, const char *be)
{
#define CA (a < ae ? (unsigned char)*a : 0)
#define CB (b < be ? (unsigned char)*b : 0)
	while (a < ae || b < be) {
		int first_diff = 0;

		while ((a < ae && !isdigit(CA)) || (b < be && !isdigit(CB))) {
			int ac = order(CA), bc = order(CB);

			if (ac != bc)
				return ac - bc;
			if (a < ae)
				a++;
			if (b < be)
				b++;
		}
		while (CA == '0')
			a++;
		while (CB == '0')
			b++;
		while (isdigit(CA) && isdigit(CB)) {
			if (!first_diff)
				first_diff = CA - CB;
			a++;
			b++;
		}
		if (isdigit(CA))
			return 1;
		if (isdigit(CB))
			return -1;
		if (first_diff)
			return first_diff;
	}
	return 0;
#undef CA
#undef CB
}

static int
parse(const char *s, struct ver *v)
{
	const char *colon, *dash, *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n'))
		end--;
	if (end == s)
		return PG_EFORMAT;
	v->epoch = 0;
	colon = memchr(s, ':', (size_t)(end - s));
	if (colon) {
		char *ep;

		if (colon == s || !isdigit((unsigned char)*s))
			return PG_EFORMAT;
		v->epoch = strtoul(s, &ep, 10);
		if (ep != colon || v->epoch > 0x7fffffffUL)
			return PG_EFORMAT;
		s = colon + 1;
	}
	dash = NULL;
	for (const char *p = s; p < end; p++)
		if (*p == '-')
			dash = p;
	v->up = s;
	v->up_end = dash ? dash : end;
	v->rev = dash ? dash + 1 : end;
	v->rev_end = end;
	if (v->up == v->up_end || (dash && v->rev == v->rev_end))
		return PG_EFORMAT;
	return 0;
}

int
pg_debver_check(const char *v)
{
	struct ver p;

	if (!v || parse(v, &p) < 0)
		return PG_EFORMAT;
	if (!isdigit((unsigned char)*p.up))
		return PG_EFORMAT;
	for (const char *c = p.up; c < p.up_end; c++)
		if (!isalnum((unsigned char)*c) && !strchr(".+-~:", *c))
			return PG_EFORMAT;
	for (const char *c = p.rev; c < p.rev_end; c++)
		if (!isalnum((unsigned char)*c) && !strchr(".+~", *c))
			return PG_EFORMAT;
	return 0;
}

int
pg_debver_cmp(const char *a, const char *b)
{
	struct ver va, vb;
	int r;

	/* Unparsable versions sort by plain bytes so the order stays total. */
	if (parse(a, &va) < 0 || parse(b, &vb) < 0)
		return strcmp(a, b);
	if (va.epoch != vb.epoch)
		return va.epoch < vb.epoch ? -1 : 1;
	r = verrevcmp(va.up, va.up_end, vb.up, vb.up_end);
	if (r)
		return r < 0 ? -1 : 1;
	r = verrevcmp(va.rev, va.rev_end, vb.rev, vb.rev_end);
	return r < 0 ? -1 : r > 0;
}
