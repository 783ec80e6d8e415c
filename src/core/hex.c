/* Hex encoding and tolerant decoding. */
#include "payguard/hex.h"
#include "payguard/error.h"

void
pg_hex_encode(char *out, const uint8_t *in, size_t n)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[in[i] >> 4];
		out[2 * i + 1] = d[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void
pg_hex_encode_upper(char *out, const uint8_t *in, size_t n, int spaced)
{
	static const char d[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (spaced && i)
			out[o++] = ' ';
		out[o++] = d[in[i] >> 4];
		out[o++] = d[in[i] & 15];
	}
	out[o] = '\0';
}

static int
nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
pg_hex_decode(uint8_t *out, size_t outlen, const char *in)
{
	size_t n = 0;
	int hi = -1;

	for (; *in; in++) {
		int v;

		if (*in == ' ' || *in == '\t' || *in == ':' || *in == '\n' || *in == '\r')
			continue;
		v = nibble(*in);
		if (v < 0)
			return PG_EFORMAT;
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n >= outlen)
			return PG_ETOOBIG;
		out[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	if (hi >= 0)
		return PG_EFORMAT;
	return (int)n;
}
