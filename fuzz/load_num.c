/*
 * libFuzzer harness: the load readers' number parser (src/load/num.c) must
 * equal glibc's strtod bit for bit on every prefix it accepts, and accept
 * every plain decimal strtod reads (hex, inf and nan are refused by design);
 * and the row parser's fast path (16-byte reads, num.c short_num) must give
 * the same as strtod on a one-field line; and every row the bulk path
 * (pgi_load_fast_rows) takes from the input as text, with 1-3 fields after
 * an optional VM name, must hold strtod's values and read nothing past end.
 */
#include "load/load_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The bulk path over data as rows: what it takes is checked field by field. */
static void
bulk(const uint8_t *data, size_t size)
{
	size_t n = size ? 1 + data[0] % 3 : 1, plen = size && data[0] & 4 ? 2 : 0, got;
	char *pad = calloc(1, size + 64);
	double *v = malloc((size + 1) * 3 * sizeof(double));
	const char *q, *p;

	if (!pad || !v)
		goto out;
	memcpy(pad, data, size);
	/* Stale newlines and digits past end, as in a reader's buffer: not to be taken. */
	memset(pad + size, '\n', 64);
	q = pgi_load_fast_rows(pad, pad + size, pad + size + 64, ',', "vm", plen, data[0] & 8, v, n,
			       size + 1, &got);
	if (q < pad || q > pad + size || (got && q[-1] != '\n'))
		abort();
	p = pad;
	for (size_t r = 0; r < got; r++) {
		if (plen && memcmp(p, "vm,", 3) != 0)
			abort();
		p += plen ? 3 : 0;
		for (size_t j = 0; j < n; j++) {
			char *e;
			double want = strtod(p, &e);

			if (e == p || memcmp(&want, &v[r * n + j], sizeof(want)) != 0 ||
			    ((data[0] & 8) && want < 0))
				abort();
			if (*e == '\r')
				e++;
			if (*e != (j + 1 < n ? ',' : '\n'))
				abort();
			p = e + 1;
		}
	}
	if (p != q)
		abort();
out:
	free(pad);
	free(v);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	const char *p;
	char *e;
	double got = 0, want;
	size_t n;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	/* The scan must not read past its end: it gets the bytes, not the NUL. */
	n = pgi_load_num_scan((const char *)data, (const char *)data + size, &got);
	if (memchr(s, 0, size)) {
		/* An embedded NUL ends strtod's text: compare on the part before it. */
		size_t l = strlen(s);
		n = pgi_load_num_scan(s, s + l, &got);
	}
	want = strtod(s, &e);
	p = s + (*s == '+' || *s == '-');
	if (n) {
		int hex = p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
		if (!hex && ((size_t)(e - s) != n || memcmp(&got, &want, sizeof(got)) != 0))
			abort();
	} else if ((*p >= '0' && *p <= '9') || (*p == '.' && p[1] >= '0' && p[1] <= '9')) {
		abort(); /* a plain decimal strtod reads, refused */
	}
	{
		double v;
		(void)pgi_load_parse_double(s, &v);
	}
	{
		/* The input as a one-field line, 16 readable bytes past its NUL as the
		 * readers give; taken means one number, blanks around it. */
		char *pad = calloc(1, size + 17);
		double v;

		if (pad && !memchr(data, 0, size)) {
			memcpy(pad, data, size);
			if (pgi_load_parse_line(pad, pad + size + 17, ',', &v, 1)) {
				const char *b = pad + strspn(pad, " \t");
				want = strtod(b, &e);
				if (e == b || memcmp(&v, &want, sizeof(v)) != 0)
					abort();
			}
		}
		free(pad);
	}
	free(s);
	bulk(data, size);
	return 0;
}
