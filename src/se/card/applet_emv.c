/*
 * EMV-style payment applet (EMV 4.3 Book 3; cryptogram after Book 2 A1.3
 * with AES): SELECT answers an FCI with a PDOL; GET PROCESSING OPTIONS
 * increments the persistent ATC and answers AIP + AFL (format 2, template
 * 77); READ RECORD serves the personalised records; GENERATE AC answers
 * ARQC/TC/AAC (P1) with an AES-CMAC application cryptogram under a session
 * key derived from the per-card key and the ATC. The transit applet is the
 * same EMV flow (an AIP without offline data authentication, not listed in
 * the PPSE) with a persistent stored value: GET BALANCE (80 5C) and DEBIT
 * (80 54, 4-byte amount). INSTALL parameters (C9): [priority [label]].
 * docs/se-card.md.
 */
#include "gp_int.h"

#include "payguard/cmac.h"
#include "payguard/mem.h"
#include "payguard/tlv.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

const uint8_t pg_gp_pay_aid[7] = {0xF0, 'P', 'G', 'P', 'A', 'Y', 0x01};

#define NREC	  3
#define REC_MAX	  200
#define CDOL1_LEN 29
#define PDOL_LEN  16

/* Persistent state: bytes only (no padding), stored as is in the image. */
struct pay_p {
	uint8_t has_key;
	uint8_t key[16]; /* per-card AC master key (AES-128) */
	uint8_t atc[2];
	uint8_t prio;
	uint8_t label_len;
	uint8_t label[16];
	uint8_t rec_len[NREC];
	uint8_t rec[NREC][REC_MAX]; /* SFI 1 records 1-2, SFI 2 record 1 */
};
struct pay_v {
	uint8_t gpo; /* GET PROCESSING OPTIONS done in this selection */
	uint8_t acs; /* GENERATE ACs answered since */
};

static const uint8_t pay_aip[2] = {0x08, 0x80};	    /* terminal risk management; EMV mode */
static const uint8_t transit_aip[2] = {0x00, 0x80}; /* no offline data authentication */
static const uint8_t pdol[] = {0x9F, 0x66, 0x04, 0x9F, 0x02, 0x06,
			       0x9F, 0x37, 0x04, 0x5F, 0x2A, 0x02};
static const uint8_t cdol1[] = {0x9F, 0x02, 0x06, 0x9F, 0x03, 0x06, 0x9F, 0x1A, 0x02, 0x95, 0x05,
				0x5F, 0x2A, 0x02, 0x9A, 0x03, 0x9C, 0x01, 0x9F, 0x37, 0x04};

static int
rec_slot(uint8_t sfi, uint8_t rec)
{
	if (sfi == 1 && (rec == 1 || rec == 2))
		return rec - 1;
	if (sfi == 2 && rec == 1)
		return 2;
	return -1;
}

int
pgi_gp_pay_fci_entry(const struct gp_inst *in, struct pg_ppse_fci *f)
{
	const struct pay_p *p = (const struct pay_p *)in->p;

	return pg_ppse_fci_entry(f, in->aid, in->aid_len, (const char *)p->label, p->label_len,
				 p->prio);
}

/* Default personalisation: a test PAN from the serial, the card's cardholder data, CDOL1. */
static void
default_records(struct gp_inst *in, struct pay_p *p)
{
	char digits[17];
	uint8_t pan[8], rec[REC_MAX];
	struct pg_buf b = PG_BUF_INIT(REC_MAX);
	size_t m;
	int sum = 0;

	snprintf(digits, sizeof(digits), "599999%09u", (unsigned)(in->g->serial % 1000000000u));
	for (int i = 14; i >= 0; i--) { /* Luhn check digit */
		int d = digits[i] - '0';

		if ((14 - i) % 2 == 0)
			d = d * 2 > 9 ? d * 2 - 9 : d * 2;
		sum += d;
	}
	digits[15] = (char)('0' + (10 - sum % 10) % 10);
	for (int i = 0; i < 8; i++)
		pan[i] = (uint8_t)((digits[2 * i] - '0') << 4 | (digits[2 * i + 1] - '0'));
	/* SFI 1 record 1: track 2 equivalent data and the cardholder name. */
	{
		uint8_t t2[19];

		memcpy(t2, pan, 8);
		t2[8] = 0xD3, t2[9] = 0x01, t2[10] = 0x22, t2[11] = 0x01; /* D 3012 201 */
		memset(t2 + 12, 0, 6);
		t2[18] = 0x0F;
		pg_tlv_open(&b, 0x70, &m);
		pg_tlv_append(&b, 0x57, t2, sizeof(t2));
		pg_tlv_append(&b, 0x5F20, "PAYGUARD/TEST", 13);
		pg_tlv_close(&b, m);
		memcpy(p->rec[0], b.data, b.len);
		p->rec_len[0] = (uint8_t)b.len;
	}
	/* SFI 1 record 2: PAN, dates, country, CDOL1, CVM list (no CVM required). */
	pg_buf_reset(&b);
	{
		static const uint8_t exp[3] = {0x30, 0x12, 0x31}, eff[3] = {0x26, 0x01, 0x01},
				     ctry[2] = {0x02, 0x50}, auc[2] = {0xFF, 0x00},
				     cvm[10] = {0, 0, 0, 0, 0, 0, 0, 0, 0x1F, 0x00};

		pg_tlv_open(&b, 0x70, &m);
		pg_tlv_append(&b, 0x5A, pan, 8);
		pg_tlv_append(&b, 0x5F24, exp, 3);
		pg_tlv_append(&b, 0x5F25, eff, 3);
		pg_tlv_append(&b, 0x5F28, ctry, 2);
		pg_tlv_append(&b, 0x8C, cdol1, sizeof(cdol1));
		pg_tlv_append(&b, 0x9F07, auc, 2);
		pg_tlv_append(&b, 0x8E, cvm, sizeof(cvm));
		pg_tlv_close(&b, m);
		memcpy(p->rec[1], b.data, b.len);
		p->rec_len[1] = (uint8_t)b.len;
	}
	(void)rec;
	pg_buf_release(&b);
}

/* Transit: the payment state, then the stored value (big-endian, persistent). */
struct transit_p {
	struct pay_p pay;
	uint8_t balance[4];
};

#define TRANSIT_BALANCE 5000u /* a fresh transit instance's stored value */

static const uint8_t *
aip_of(const struct gp_inst *in)
{
	return in->cls == &pgi_gp_class_transit ? transit_aip : pay_aip;
}

static uint16_t
pay_install(struct gp_inst *in, const uint8_t *params, size_t n)
{
	struct pay_p *p = (struct pay_p *)in->p;

	/* C9: [priority (1..15) [label (1..16 printable bytes)]] */
	if (n > 0 && (n > 17 || params[0] == 0 || params[0] > 15))
		return PG_SW_WRONG_DATA;
	for (size_t i = 1; i < n; i++)
		if (params[i] < 0x20 || params[i] > 0x7E)
			return PG_SW_WRONG_DATA;
	p->prio = n ? params[0] : 1;
	if (n > 1) {
		memcpy(p->label, params + 1, n - 1);
		p->label_len = (uint8_t)(n - 1);
	} else if (in->cls == &pgi_gp_class_transit) {
		memcpy(p->label, "TRANSIT", 7);
		p->label_len = 7;
	} else {
		memcpy(p->label, "PAYGUARD", 8);
		p->label_len = 8;
	}
	/* A fresh per-card key until personalisation replaces it (DGI 8000). */
	if (RAND_bytes(p->key, sizeof(p->key)) != 1)
		return PG_SW_UNKNOWN;
	p->has_key = 1;
	default_records(in, p);
	return PG_SW_OK;
}

static int
pay_check(const uint8_t *raw)
{
	const struct pay_p *p = (const struct pay_p *)raw;

	if (p->has_key > 1 || p->label_len > 16 || p->prio > 15)
		return -1;
	for (int i = 0; i < NREC; i++)
		if (p->rec_len[i] > REC_MAX)
			return -1;
	return 0;
}

static uint16_t
pay_select(struct gp_inst *in, int chn, struct pg_buf *b)
{
	struct pay_p *p = (struct pay_p *)in->p;
	size_t m6f, ma5;

	(void)chn;
	memset(in->v, 0, sizeof(struct pay_v)); /* a new transaction */
	if (pg_tlv_open(b, 0x6F, &m6f) < 0 || pg_tlv_append(b, 0x84, in->aid, in->aid_len) < 0 ||
	    pg_tlv_open(b, 0xA5, &ma5) < 0 || pg_tlv_append(b, 0x50, p->label, p->label_len) < 0 ||
	    pg_tlv_append(b, 0x87, &p->prio, 1) < 0 ||
	    pg_tlv_append(b, 0x9F38, pdol, sizeof(pdol)) < 0 || pg_tlv_close(b, ma5) < 0 ||
	    pg_tlv_close(b, m6f) < 0)
		return PG_SW_UNKNOWN;
	return PG_SW_OK;
}

static uint16_t
out(const struct pg_buf *b, uint8_t *resp, size_t *rlen, size_t cap)
{
	if (b->len > cap) {
		*rlen = 0;
		return PG_SW_WRONG_LENGTH;
	}
	memcpy(resp, b->data, b->len);
	*rlen = b->len;
	return PG_SW_OK;
}

static uint16_t
gpo(struct gp_inst *in, const struct pg_capdu *c, uint8_t *resp, size_t *rlen)
{
	struct pay_p *p = (struct pay_p *)in->p;
	struct pay_v *v = (struct pay_v *)in->v;
	struct pg_buf b = PG_BUF_INIT(64);
	uint8_t afl[8];
	size_t m, an = 0, cap = *rlen;
	unsigned atc;
	uint16_t sw;

	*rlen = 0;
	if (c->p1 || c->p2)
		return PG_SW_INCORRECT_P1P2;
	if (c->lc != 2 + PDOL_LEN || c->data[0] != 0x83 || c->data[1] != PDOL_LEN)
		return PG_SW_WRONG_LENGTH; /* PDOL data must match the PDOL (Book 3 10.1) */
	atc = (unsigned)(p->atc[0] << 8 | p->atc[1]);
	if (!p->has_key || atc == 0xFFFF || v->gpo)
		return PG_SW_CONDITIONS;
	atc++;
	p->atc[0] = (uint8_t)(atc >> 8), p->atc[1] = (uint8_t)atc;
	pgi_gp_dirty(in->g);
	v->gpo = 1;
	v->acs = 0;
	if (p->rec_len[0]) {
		afl[an++] = 1 << 3, afl[an++] = 1, afl[an++] = p->rec_len[1] ? 2 : 1, afl[an++] = 0;
	}
	if (p->rec_len[2]) {
		afl[an++] = 2 << 3, afl[an++] = 1, afl[an++] = 1, afl[an++] = 0;
	}
	if (pg_tlv_open(&b, 0x77, &m) < 0 || pg_tlv_append(&b, 0x82, aip_of(in), 2) < 0 ||
	    pg_tlv_append(&b, 0x94, afl, an) < 0 || pg_tlv_close(&b, m) < 0)
		sw = PG_SW_UNKNOWN;
	else
		sw = out(&b, resp, rlen, cap);
	pg_buf_release(&b);
	return sw;
}

static uint16_t
read_record(struct gp_inst *in, const struct pg_capdu *c, uint8_t *resp, size_t *rlen)
{
	struct pay_p *p = (struct pay_p *)in->p;
	size_t cap = *rlen;
	int s;

	*rlen = 0;
	if ((c->p2 & 0x07) != 0x04 || c->p1 == 0)
		return PG_SW_INCORRECT_P1P2;
	s = rec_slot(c->p2 >> 3, c->p1);
	if (s < 0 || !p->rec_len[s])
		return PG_SW_RECORD_NOT_FOUND;
	if (p->rec_len[s] > cap)
		return PG_SW_WRONG_LENGTH;
	memcpy(resp, p->rec[s], p->rec_len[s]);
	*rlen = p->rec_len[s];
	return PG_SW_OK;
}

static uint16_t
generate_ac(struct gp_inst *in, const struct pg_capdu *c, uint8_t *resp, size_t *rlen)
{
	struct pay_p *p = (struct pay_p *)in->p;
	struct pay_v *v = (struct pay_v *)in->v;
	uint8_t type = c->p1 & 0xC0, cid, blk[16] = {0}, sk[16], mac[16];
	uint8_t iad[7] = {0x06, 0x01, 0x50, 0x03, 0x00, 0x00, 0x00};
	uint8_t msg[CDOL1_LEN + 2 + 2 + sizeof(iad)];
	struct pg_buf b = PG_BUF_INIT(64);
	size_t m, cap = *rlen;
	uint16_t sw;

	*rlen = 0;
	if ((c->p1 & 0x3F) || type == 0xC0 || c->p2)
		return PG_SW_INCORRECT_P1P2; /* no CDA */
	if (c->lc != CDOL1_LEN)
		return PG_SW_WRONG_LENGTH;
	if (!v->gpo || v->acs >= 2 || (v->acs == 1 && type == 0x80))
		return PG_SW_CONDITIONS;
	cid = type == 0x80 ? 0x80 : type == 0x40 ? 0x40 : 0x00;
	iad[4] = cid;
	/* SK = AES(MK)[ATC || F0 || 00..] ; AC = AES-CMAC(SK, CDOL1 || AIP || ATC || IAD)[0..8). */
	blk[0] = p->atc[0], blk[1] = p->atc[1], blk[2] = 0xF0;
	memcpy(msg, c->data, CDOL1_LEN);
	memcpy(msg + CDOL1_LEN, aip_of(in), 2);
	memcpy(msg + CDOL1_LEN + 2, p->atc, 2);
	memcpy(msg + CDOL1_LEN + 4, iad, sizeof(iad));
	if (pgi_gp_aes_ecb(p->key, 16, blk, sk) < 0 ||
	    pg_aes_cmac(sk, 16, msg, sizeof(msg), mac) < 0) {
		sw = PG_SW_UNKNOWN;
		goto done;
	}
	v->acs++;
	if (type != 0x80)
		v->gpo = 0; /* TC / AAC end the transaction */
	if (pg_tlv_open(&b, 0x77, &m) < 0 || pg_tlv_append(&b, 0x9F27, &cid, 1) < 0 ||
	    pg_tlv_append(&b, 0x9F36, p->atc, 2) < 0 || pg_tlv_append(&b, 0x9F26, mac, 8) < 0 ||
	    pg_tlv_append(&b, 0x9F10, iad, sizeof(iad)) < 0 || pg_tlv_close(&b, m) < 0)
		sw = PG_SW_UNKNOWN;
	else
		sw = out(&b, resp, rlen, cap);
done:
	pg_memzero(sk, sizeof(sk));
	pg_memzero(mac, sizeof(mac));
	pg_buf_release(&b);
	return sw;
}

static int
pay_process(struct gp_inst *in, int chn, const struct pg_capdu *c, uint8_t *resp, size_t *rlen,
	    uint16_t *sw)
{
	(void)chn;
	if (c->cla & 0x80 && c->ins == 0xA8)
		*sw = gpo(in, c, resp, rlen);
	else if (!(c->cla & 0x80) && c->ins == 0xB2)
		*sw = read_record(in, c, resp, rlen);
	else if (c->cla & 0x80 && c->ins == 0xAE)
		*sw = generate_ac(in, c, resp, rlen);
	else {
		*rlen = 0;
		*sw = PG_SW_INS_NOT_SUPPORTED;
	}
	return 0;
}

/* Personalisation DGIs: 0101, 0102, 0201 records (template 70); 8000 AC key; 9102 50 + 87. */
static uint16_t
pay_store_dgi(struct gp_inst *in, uint16_t dgi, const uint8_t *d, size_t n)
{
	struct pay_p *p = (struct pay_p *)in->p;
	struct pg_tlv t;
	int s, k;

	if (dgi == 0x8000) {
		if (n != 16)
			return PG_SW_WRONG_DATA;
		memcpy(p->key, d, 16);
		p->has_key = 1;
		return PG_SW_OK;
	}
	if (dgi == 0x9102) {
		struct pg_tlv l;
		int a = pg_tlv_next(&l, d, n), b2;

		if (a <= 0 || l.tag != 0x50 || l.len < 1 || l.len > 16)
			return PG_SW_WRONG_DATA;
		b2 = pg_tlv_next(&t, d + a, n - (size_t)a);
		if (b2 <= 0 || t.tag != 0x87 || t.len != 1 || (size_t)(a + b2) != n ||
		    t.val[0] == 0 || t.val[0] > 15)
			return PG_SW_WRONG_DATA;
		memcpy(p->label, l.val, l.len);
		p->label_len = (uint8_t)l.len;
		p->prio = t.val[0];
		return PG_SW_OK;
	}
	s = rec_slot((uint8_t)(dgi >> 8), (uint8_t)dgi);
	if (s < 0)
		return PG_SW_REF_DATA_NOT_FOUND;
	k = pg_tlv_next(&t, d, n);
	if (n > REC_MAX || k <= 0 || (size_t)k != n || t.tag != 0x70 || d[0] != 0x70 ||
	    pg_tlv_validate(t.val, t.len) < 0)
		return PG_SW_WRONG_DATA;
	memcpy(p->rec[s], d, n);
	p->rec_len[s] = (uint8_t)n;
	return PG_SW_OK;
}

static int
pay_perso_done(const struct gp_inst *in)
{
	const struct pay_p *p = (const struct pay_p *)in->p;

	return p->has_key && p->rec_len[0];
}

const struct gp_class pgi_gp_class_pay = {
    .name = "payment",
    .id = 2,
    .elf_aid = {0xF0, 'P', 'G', 'L', 'F', 0x02},
    .elf_len = 6,
    .mod_aid = {0xF0, 'P', 'G', 'M', 'D', 0x02},
    .mod_len = 6,
    .def_aid = {0xF0, 'P', 'G', 'P', 'A', 'Y', 0x01},
    .def_len = 7,
    .pstate = sizeof(struct pay_p),
    .vstate = sizeof(struct pay_v),
    .install = pay_install,
    .check = pay_check,
    .select = pay_select,
    .process = pay_process,
    .store_dgi = pay_store_dgi,
    .perso_done = pay_perso_done,
};

/* ---- transit: the payment flow plus a stored value ---- */

static uint16_t
transit_install(struct gp_inst *in, const uint8_t *params, size_t n)
{
	struct transit_p *t = (struct transit_p *)in->p;
	uint16_t sw = pay_install(in, params, n);

	t->balance[0] = (uint8_t)(TRANSIT_BALANCE >> 24);
	t->balance[1] = (uint8_t)(TRANSIT_BALANCE >> 16);
	t->balance[2] = (uint8_t)(TRANSIT_BALANCE >> 8);
	t->balance[3] = (uint8_t)TRANSIT_BALANCE;
	return sw;
}

/* GET BALANCE (80 5C, Le 4) and DEBIT (80 54, Lc 4: the amount): the balance after. */
static uint16_t
purse(struct gp_inst *in, const struct pg_capdu *c, uint8_t *resp, size_t *rlen)
{
	struct transit_p *t = (struct transit_p *)in->p;
	uint32_t bal = (uint32_t)t->balance[0] << 24 | (uint32_t)t->balance[1] << 16 |
		       (uint32_t)t->balance[2] << 8 | t->balance[3];
	size_t cap = *rlen;

	*rlen = 0;
	if (c->p1 || c->p2)
		return PG_SW_INCORRECT_P1P2;
	if (c->ins == 0x54) {
		uint32_t amount;

		if (c->lc != 4)
			return PG_SW_WRONG_LENGTH;
		amount = (uint32_t)c->data[0] << 24 | (uint32_t)c->data[1] << 16 |
			 (uint32_t)c->data[2] << 8 | c->data[3];
		if (amount > bal)
			return PG_SW_CONDITIONS; /* not enough value left */
		bal -= amount;
		memcpy(t->balance,
		       (uint8_t[4]){(uint8_t)(bal >> 24), (uint8_t)(bal >> 16), (uint8_t)(bal >> 8),
				    (uint8_t)bal},
		       4);
		pgi_gp_dirty(in->g);
	} else if (c->lc) {
		return PG_SW_WRONG_LENGTH;
	}
	if (cap < 4)
		return PG_SW_WRONG_LENGTH;
	memcpy(resp, t->balance, 4);
	*rlen = 4;
	return PG_SW_OK;
}

static int
transit_process(struct gp_inst *in, int chn, const struct pg_capdu *c, uint8_t *resp, size_t *rlen,
		uint16_t *sw)
{
	if ((c->cla & 0x80) && (c->ins == 0x5C || c->ins == 0x54)) {
		*sw = purse(in, c, resp, rlen);
		return 0;
	}
	return pay_process(in, chn, c, resp, rlen, sw);
}

const struct gp_class pgi_gp_class_transit = {
    .name = "transit",
    .id = 7,
    .elf_aid = {0xF0, 'P', 'G', 'L', 'F', 0x07},
    .elf_len = 6,
    .mod_aid = {0xF0, 'P', 'G', 'M', 'D', 0x07},
    .mod_len = 6,
    .def_aid = {0xF0, 'P', 'G', 'T', 'R', 'N', 'S', 0x01},
    .def_len = 8,
    .pstate = sizeof(struct transit_p),
    .vstate = sizeof(struct pay_v),
    .install = transit_install,
    .check = pay_check,
    .select = pay_select,
    .process = transit_process,
    .store_dgi = pay_store_dgi,
    .perso_done = pay_perso_done,
};
