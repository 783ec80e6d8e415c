/*
 * ETSI TS 102 613 SHDLC: frame codec and the sliding-window endpoint shared
 * by the SWP host and card roles (go-back-N retransmission, REJ, RR/RNR,
 * duplicate detection by N(S), acknowledgement piggy-backed on I-frames).
 */
#include "shdlc.h"
#include "payguard/error.h"
#include "payguard/log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/*
 * CRC-16/X.25 (ISO/IEC 13239, reflected 8408, preset FFFF, complemented),
 * four bytes per step ("slicing by 4"): crc_t[k][i] is the CRC register
 * after byte i followed by k zero bytes. SWP frames and every SPI/I2C block
 * run through it twice per direction, so it is the hot spot of those links.
 */
static uint16_t crc_t[4][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
	for (unsigned i = 0; i < 256; i++) {
		uint16_t c = (uint16_t)i;

		for (int b = 0; b < 8; b++)
			c = (c & 1) ? (uint16_t)((c >> 1) ^ 0x8408) : (uint16_t)(c >> 1);
		crc_t[0][i] = c;
	}
	for (unsigned k = 1; k < 4; k++)
		for (unsigned i = 0; i < 256; i++)
			crc_t[k][i] =
			    (uint16_t)((crc_t[k - 1][i] >> 8) ^ crc_t[0][crc_t[k - 1][i] & 0xff]);
}

uint16_t
pgi_shdlc_crc(const uint8_t *p, size_t n)
{
	uint16_t c = 0xFFFF;

	pthread_once(&crc_once, crc_init);
	for (; n >= 4; n -= 4, p += 4) {
		uint16_t x = (uint16_t)(c ^ (p[0] | p[1] << 8));

		c = (uint16_t)(crc_t[3][x & 0xff] ^ crc_t[2][x >> 8] ^ crc_t[1][p[2]] ^
			       crc_t[0][p[3]]);
	}
	while (n--)
		c = (uint16_t)((c >> 8) ^ crc_t[0][(c ^ *p++) & 0xff]);
	return (uint16_t)~c;
}

size_t
pgi_shdlc_encode(uint8_t *out, uint8_t ctrl, const uint8_t *info, size_t n)
{
	uint16_t crc;

	out[0] = (uint8_t)(1 + n + 2);
	out[1] = ctrl;
	if (n)
		memcpy(out + 2, info, n);
	/* The CRC covers LEN too, so a corrupted length cannot pass. */
	crc = pgi_shdlc_crc(out, 2 + n);
	out[2 + n] = (uint8_t)(crc & 0xff);
	out[3 + n] = (uint8_t)(crc >> 8);
	return 4 + n;
}

int
pgi_shdlc_decode(struct shdlc_frame *f, const uint8_t *p, size_t n)
{
	uint8_t c;
	uint16_t crc;

	memset(f, 0, sizeof(*f));
	if (n < 1 + SHDLC_MIN_LEN || n > SHDLC_MAX_FRAME || p[0] != n - 1)
		return pg_error(PG_EFORMAT, "shdlc", "frame of %zu bytes with LEN %u", n,
				n ? p[0] : 0);
	crc = pgi_shdlc_crc(p, n - 2);
	if (p[n - 2] != (crc & 0xff) || p[n - 1] != (crc >> 8))
		return PG_ECORRUPT; /* silent: a line error, not a caller mistake */
	c = p[1];
	f->ctrl = c;
	f->info = p + 2;
	f->len = n - 4;
	if ((c & 0xC0) == 0x80) {
		f->kind = SHDLC_I;
		f->ns = (c >> 3) & 7;
		f->nr = c & 7;
	} else if ((c & 0xE0) == 0xC0) {
		f->kind = SHDLC_S;
		f->type = (c >> 3) & 3;
		f->nr = c & 7;
		if (f->len)
			return pg_error(PG_EFORMAT, "shdlc", "S-frame with %zu info bytes", f->len);
	} else if ((c & 0xE0) == 0xE0) {
		f->kind = SHDLC_U;
		f->type = c & 0x1F;
		if (f->type != SHDLC_U_RSET && f->type != SHDLC_U_UA)
			return pg_error(PG_EFORMAT, "shdlc", "unknown U-frame %02X", c);
		if (f->type == SHDLC_U_UA && f->len)
			return pg_error(PG_EFORMAT, "shdlc", "UA with info");
		if (f->type == SHDLC_U_RSET && f->len > 2)
			return pg_error(PG_EFORMAT, "shdlc", "RSET with %zu info bytes", f->len);
		if (f->type == SHDLC_U_RSET && f->len >= 1 &&
		    (f->info[0] < 1 || f->info[0] > SHDLC_MAX_WINDOW))
			return pg_error(PG_EFORMAT, "shdlc", "RSET window %u", f->info[0]);
	} else {
		return pg_error(PG_EFORMAT, "shdlc", "control byte %02X", c);
	}
	return 0;
}

const char *
pgi_shdlc_describe(const struct shdlc_frame *f, char *buf, size_t n)
{
	static const char *const s[] = {"RR", "REJ", "RNR", "SREJ"};

	if (f->kind == SHDLC_I)
		snprintf(buf, n, "I(ns=%d,nr=%d) %zu bytes", f->ns, f->nr, f->len);
	else if (f->kind == SHDLC_S)
		snprintf(buf, n, "%s(nr=%d)", s[f->type & 3], f->nr);
	else
		snprintf(buf, n, "%s %zu bytes", f->type == SHDLC_U_RSET ? "RSET" : "UA", f->len);
	return buf;
}

void
pgi_shdlc_reset(struct shdlc *e, int window)
{
	e->window = window;
	e->vs = e->va = e->vr = 0;
	e->unacked_rx = 0;
	e->rej_sent = 0;
	e->peer_busy = 0;
}

static int
send_frame(struct shdlc *e, uint8_t ctrl, const uint8_t *info, size_t n)
{
	uint8_t pkt[SHDLC_MAX_FRAME];
	size_t len = pgi_shdlc_encode(pkt, ctrl, info, n);

	e->frames_out++;
	return pg_stream_write(e->out, pkt, len);
}

static int
send_i(struct shdlc *e, uint8_t ns)
{
	e->unacked_rx = 0;
	return send_frame(e, (uint8_t)(0x80 | ns << 3 | e->vr), e->txinfo[ns], e->txlen[ns]);
}

int
pgi_shdlc_pump(struct shdlc *e)
{
	while (!e->peer_busy && shdlc_unacked(e) < e->window) {
		int n = e->next(e->ctx, e->txinfo[e->vs]);
		int rc;

		if (n <= 0)
			return n;
		e->txlen[e->vs] = (uint8_t)n;
		rc = send_i(e, e->vs);
		e->vs = (e->vs + 1) & 7;
		if (rc < 0)
			return rc;
	}
	return 0;
}

int
pgi_shdlc_send_s(struct shdlc *e, int type)
{
	e->unacked_rx = 0;
	return send_frame(e, (uint8_t)(0xC0 | type << 3 | e->vr), NULL, 0);
}

int
pgi_shdlc_send_u(struct shdlc *e, int mod, const uint8_t *info, size_t n)
{
	return send_frame(e, (uint8_t)(0xE0 | mod), info, n);
}

int
pgi_shdlc_retransmit(struct shdlc *e)
{
	for (uint8_t s = e->va; s != e->vs; s = (s + 1) & 7) {
		int rc = send_i(e, s);

		e->retransmits++;
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Accepts N(R) if it lies between our oldest unacknowledged frame and V(S). */
static int
take_ack(struct shdlc *e, int nr)
{
	int d = (nr - e->va) & 7;

	if (d > shdlc_unacked(e))
		return -1;
	e->va = (uint8_t)nr;
	return d > 0;
}

int
pgi_shdlc_input(struct shdlc *e, const struct shdlc_frame *f)
{
	int res = 0, a;

	e->frames_in++;
	if (f->kind == SHDLC_U)
		return f->type == SHDLC_U_RSET ? SHDLC_RX_RSET : SHDLC_RX_UA;
	a = take_ack(e, f->nr);
	if (a < 0) {
		pg_trace("shdlc", "N(R)=%d outside [%d,%d]: frame ignored", f->nr, e->va, e->vs);
		return 0;
	}
	if (a > 0)
		res |= SHDLC_RX_ACK;
	if (f->kind == SHDLC_S) {
		res |= SHDLC_RX_S;
		e->peer_busy = f->type == SHDLC_S_RNR;
		if (f->type == SHDLC_S_REJ || f->type == SHDLC_S_SREJ) {
			/* SREJ is not negotiated; treat it as REJ (go back to N(R)). */
			int rc = pgi_shdlc_retransmit(e);

			if (rc < 0)
				return rc;
			res |= SHDLC_RX_REJ;
		}
		return res;
	}
	/* I-frame: with window w the peer's N(S) is at most w-1 ahead or w behind. */
	{
		int d = (f->ns - e->vr) & 7;

		if (d == 0) {
			int rc;

			e->vr = (e->vr + 1) & 7;
			e->unacked_rx++;
			e->rej_sent = 0;
			rc = e->deliver(e->ctx, f->info, f->len);
			if (rc < 0)
				return rc;
			res |= SHDLC_RX_NEW;
		} else if (d < e->window) {
			res |= SHDLC_RX_GAP;
		} else {
			res |= SHDLC_RX_DUP;
		}
	}
	return res;
}
