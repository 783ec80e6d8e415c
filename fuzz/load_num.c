/*
 * libFuzzer harness: the load readers' number parser (src/load/num.c) must
 * equal glibc's strtod bit for bit on every prefix it accepts, and accept
 * every plain decimal strtod reads (hex, inf and nan are refused by design);
 * and the row parser's fast path (16-byte reads, num.c short_num) must give
 * the same as strtod on a one-field line.
 */
#include "load/load_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
	return 0;
}
