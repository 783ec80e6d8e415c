/*
 * Shortest round-trip reals in JSON text (issue 13, item "Smaller"). jansson
 * prints a real with "%.17g" unless JSON_REAL_PRECISION is given, and that
 * precision is one for the whole document. So the text is dumped as jansson
 * makes it (%.17g reads back exactly) and each real token is rewritten with
 * the fewest significant digits that strtod reads back as the same double.
 */
#include "payguard/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int
pg_json_real_text(double d, char *out, size_t size)
{
	char e[40];
	int p, n, exp10;

	if (!isfinite(d))
		return -1;
	for (p = 1; p < 17; p++) {
		snprintf(e, sizeof(e), "%.*e", p - 1, d);
		if (strtod(e, NULL) == d)
			break;
	}
	snprintf(e, sizeof(e), "%.*e", p - 1, d);
	exp10 = atoi(strchr(e, 'e') + 1);
	/* %g turns to exponent form once the exponent reaches the precision:
	 * 100 stays "100.0", not "1e+02", while it fits in 17 digits */
	if (exp10 >= p && exp10 < 17)
		p = exp10 + 1;
	n = snprintf(out, size, "%.*g", p, d);
	if (n < 0 || (size_t)n + 3 > size)
		return -1;
	if (!strpbrk(out, ".eE")) { /* keep it a real when read back, as jansson does */
		memcpy(out + n, ".0", 3);
		n += 2;
	}
	return n;
}

/* Rewrites each number token with '.' or 'e' (jansson's reals) outside strings. */
static char *
shorten(char *t)
{
	size_t len = strlen(t), o = 0;
	char *out = malloc(len + 1);
	int in_str = 0;

	if (!out) {
		free(t);
		return NULL;
	}
	for (size_t i = 0; i < len;) {
		char c = t[i];

		if (in_str) {
			out[o++] = c;
			i++;
			if (c == '\\' && i < len)
				out[o++] = t[i++];
			else if (c == '"')
				in_str = 0;
			continue;
		}
		if (c == '"') {
			in_str = 1;
			out[o++] = t[i++];
			continue;
		}
		if (c == '-' || (c >= '0' && c <= '9')) {
			size_t j = i;
			int real = 0;
			char num[40];

			while (j < len && strchr("+-0123456789.eE", t[j])) {
				real |= t[j] == '.' || t[j] == 'e' || t[j] == 'E';
				j++;
			}
			if (real && j - i < sizeof(num)) {
				char *end;
				double d;
				int n;

				memcpy(num, t + i, j - i);
				num[j - i] = 0;
				d = strtod(num, &end);
				/* never longer than jansson's own: %.17g is the longest form */
				if (*end == 0 && (n = pg_json_real_text(d, num, sizeof(num))) > 0 &&
				    (size_t)n <= j - i) {
					memcpy(out + o, num, (size_t)n);
					o += (size_t)n;
					i = j;
					continue;
				}
			}
			memcpy(out + o, t + i, j - i);
			o += j - i;
			i = j;
			continue;
		}
		out[o++] = t[i++];
	}
	out[o] = 0;
	free(t);
	return out;
}

char *
pg_json_dumps(const json_t *v, size_t flags)
{
	char *t = json_dumps(v, flags);

	return t ? shorten(t) : NULL;
}

int
pg_json_dumpf(const json_t *v, FILE *f, size_t flags)
{
	char *t = pg_json_dumps(v, flags);
	int rc;

	if (!t)
		return -1;
	rc = fputs(t, f) < 0 ? -1 : 0;
	free(t);
	return rc;
}
