/*
 * ISO/IEC 7816-4:2020 clause 5 command and response APDUs: the four cases in
 * short and extended form (5.1, table 5), class byte with logical channels
 * (5.4.1: first interindustry class channels 0-3, further 4-19), status
 * words (5.6, tables 6 and 7).
 */
#include "payguard/apdu.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <string.h>

int
pg_capdu_parse(struct pg_capdu *c, const uint8_t *p, size_t n)
{
	size_t body;

	memset(c, 0, sizeof(*c));
	if (n < 4)
		return pg_error(PG_ETRUNC, "apdu", "C-APDU of %zu bytes is shorter than its header",
				n);
	c->cla = p[0];
	c->ins = p[1];
	c->p1 = p[2];
	c->p2 = p[3];
	body = n - 4;
	p += 4;
	if (c->cla == 0xFF)
		return pg_error(PG_EFORMAT, "apdu", "CLA FF is reserved (PPS)");
	if (body == 0) {
		c->apdu_case = PG_APDU_CASE1;
		return 0;
	}
	if (body == 1) {
		c->apdu_case = PG_APDU_CASE2S;
		c->has_le = 1;
		c->le = p[0] ? p[0] : 256;
		return 0;
	}
	if (p[0] != 0) {
		/* Short Lc. */
		size_t lc = p[0];

		if (body == 1 + lc) {
			c->apdu_case = PG_APDU_CASE3S;
		} else if (body == 2 + lc) {
			c->apdu_case = PG_APDU_CASE4S;
			c->has_le = 1;
			c->le = p[1 + lc] ? p[1 + lc] : 256;
		} else {
			return pg_error(PG_EFORMAT, "apdu",
					"short Lc %zu does not match a body of %zu bytes", lc,
					body);
		}
		c->lc = lc;
		c->data = p + 1;
		return 0;
	}
	/* p[0] == 0 and body >= 2: extended length. */
	if (body == 3) {
		c->apdu_case = PG_APDU_CASE2E;
		c->has_le = 1;
		c->le = (size_t)(p[1] << 8 | p[2]);
		if (c->le == 0)
			c->le = 65536;
		return 0;
	}
	if (body < 3)
		return pg_error(PG_ETRUNC, "apdu", "extended length field truncated");
	c->lc = (size_t)(p[1] << 8 | p[2]);
	if (c->lc == 0)
		return pg_error(PG_EFORMAT, "apdu", "extended Lc of zero");
	if (body == 3 + c->lc) {
		c->apdu_case = PG_APDU_CASE3E;
	} else if (body == 5 + c->lc) {
		c->apdu_case = PG_APDU_CASE4E;
		c->has_le = 1;
		c->le = (size_t)(p[3 + c->lc] << 8 | p[4 + c->lc]);
		if (c->le == 0)
			c->le = 65536;
	} else {
		return pg_error(PG_EFORMAT, "apdu",
				"extended Lc %zu does not match a body of %zu bytes", c->lc, body);
	}
	c->data = p + 3;
	return 0;
}

int
pg_capdu_encode(const struct pg_capdu *c, int force_extended, uint8_t *out, size_t outlen)
{
	int ext = force_extended || c->lc > 255 || (c->has_le && c->le > 256);
	size_t need = 4;
	size_t o = 4;

	if (c->lc > 65535 || (c->has_le && (c->le == 0 || c->le > 65536)))
		return pg_error(PG_ERANGE, "apdu", "Nc %zu / Ne %zu out of range", c->lc, c->le);
	if (c->lc)
		need += (ext ? 3 : 1) + c->lc;
	if (c->has_le)
		need += ext ? (c->lc ? 2 : 3) : 1;
	if (need > outlen)
		return PG_ETOOBIG;
	out[0] = c->cla;
	out[1] = c->ins;
	out[2] = c->p1;
	out[3] = c->p2;
	if (c->lc) {
		if (ext) {
			out[o++] = 0;
			out[o++] = (uint8_t)(c->lc >> 8);
			out[o++] = (uint8_t)c->lc;
		} else {
			out[o++] = (uint8_t)c->lc;
		}
		memcpy(out + o, c->data, c->lc);
		o += c->lc;
	}
	if (c->has_le) {
		size_t le = c->le;

		if (ext) {
			if (!c->lc)
				out[o++] = 0;
			out[o++] = (uint8_t)(le == 65536 ? 0 : le >> 8);
			out[o++] = (uint8_t)(le == 65536 ? 0 : le);
		} else {
			out[o++] = (uint8_t)(le == 256 ? 0 : le);
		}
	}
	return (int)o;
}

int
pg_cla_is_interindustry(uint8_t cla)
{
	return (cla & 0x80) == 0;
}

int
pg_cla_channel(uint8_t cla)
{
	if (!pg_cla_is_interindustry(cla))
		return PG_EINVAL;
	if ((cla & 0x40) == 0)
		return cla & 0x03; /* first interindustry: 000x xxcc */
	return 4 + (cla & 0x0F);   /* further interindustry: 01xx cccc */
}

int
pg_cla_set_channel(uint8_t cla, int channel)
{
	int chaining = cla & 0x10;
	int first = (cla & 0x40) == 0;
	int sm_first, sm_further;

	if (channel < 0 || channel > 19)
		return PG_ERANGE;
	if (!pg_cla_is_interindustry(cla))
		return PG_EINVAL;
	/*
	 * Secure-messaging indication: bits 4-3 in the first class, bit 6 in the
	 * further class ("SM per clause 6, header not authenticated" = first
	 * class 10b). Kept exactly when the class does not change.
	 */
	sm_first = first ? (cla & 0x0C) : ((cla & 0x20) ? 0x08 : 0);
	sm_further = first ? ((cla & 0x0C) ? 0x20 : 0) : (cla & 0x20);
	if (channel <= 3)
		return chaining | sm_first | channel;
	return 0x40 | chaining | sm_further | (channel - 4);
}

struct sw_entry {
	uint16_t sw, mask;
	const char *text;
};

/* Most specific first: the first entry whose masked value matches wins. */
static const struct sw_entry sw_table[] = {
    {0x9000, 0xFFFF, "normal processing"},
    {0x6100, 0xFF00, "bytes still available (GET RESPONSE)"},
    {0x6281, 0xFFFF, "warning: part of returned data may be corrupted"},
    {0x6282, 0xFFFF, "warning: end of file or record reached before Ne bytes"},
    {0x6283, 0xFFFF, "warning: selected file deactivated"},
    {0x6310, 0xFFFF, "warning: more data available"},
    {0x63C0, 0xFFF0, "warning: verification failed, counter gives tries left"},
    {0x6200, 0xFF00, "warning: state of non-volatile memory unchanged"},
    {0x6300, 0xFF00, "warning: state of non-volatile memory changed"},
    {0x6400, 0xFF00, "execution error: state of non-volatile memory unchanged"},
    {0x6581, 0xFFFF, "execution error: memory failure"},
    {0x6500, 0xFF00, "execution error: state of non-volatile memory changed"},
    {0x6700, 0xFFFF, "wrong length"},
    {0x6881, 0xFFFF, "logical channel not supported"},
    {0x6882, 0xFFFF, "secure messaging not supported"},
    {0x6883, 0xFFFF, "last command of the chain expected"},
    {0x6884, 0xFFFF, "command chaining not supported"},
    {0x6800, 0xFF00, "functions in CLA not supported"},
    {0x6981, 0xFFFF, "command incompatible with file structure"},
    {0x6982, 0xFFFF, "security status not satisfied"},
    {0x6983, 0xFFFF, "authentication method blocked"},
    {0x6984, 0xFFFF, "reference data not usable"},
    {0x6985, 0xFFFF, "conditions of use not satisfied"},
    {0x6986, 0xFFFF, "command not allowed (no current EF)"},
    {0x6987, 0xFFFF, "expected secure messaging data objects missing"},
    {0x6988, 0xFFFF, "incorrect secure messaging data objects"},
    {0x6900, 0xFF00, "command not allowed"},
    {0x6A80, 0xFFFF, "incorrect parameters in the command data field"},
    {0x6A81, 0xFFFF, "function not supported"},
    {0x6A82, 0xFFFF, "file or application not found"},
    {0x6A83, 0xFFFF, "record not found"},
    {0x6A84, 0xFFFF, "not enough memory space in the file"},
    {0x6A86, 0xFFFF, "incorrect parameters P1-P2"},
    {0x6A88, 0xFFFF, "referenced data or reference data not found"},
    {0x6A89, 0xFFFF, "file already exists"},
    {0x6A00, 0xFF00, "wrong parameters P1-P2"},
    {0x6B00, 0xFFFF, "wrong parameters P1-P2"},
    {0x6C00, 0xFF00, "wrong Le field; SW2 gives the exact length"},
    {0x6D00, 0xFFFF, "instruction code not supported or invalid"},
    {0x6E00, 0xFFFF, "class not supported"},
    {0x6F00, 0xFFFF, "no precise diagnosis"},
};

const char *
pg_sw_meaning(uint16_t sw)
{
	for (size_t i = 0; i < sizeof(sw_table) / sizeof(sw_table[0]); i++)
		if ((sw & sw_table[i].mask) == sw_table[i].sw)
			return sw_table[i].text;
	return "unknown status word";
}
