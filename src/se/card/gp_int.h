/*
 * Private to the GlobalPlatform card (src/se/card/gp*.c, isd.c, catalogue.c,
 * applet_*.c): the card object, applet instances and classes, and the strict
 * parsers of INSTALL parameters and STORE DATA DGIs (exposed for the fuzzers).
 */
#ifndef PG_SE_CARD_GP_INT_H
#define PG_SE_CARD_GP_INT_H

#include "payguard/apdu.h"
#include "payguard/buf.h"
#include "payguard/card.h"
#include "payguard/card_gp.h"
#include "payguard/scp03.h"

#include <stddef.h>
#include <stdint.h>

#define GP_CH	      PG_CARD_MAX_CHANNELS
#define GP_MAX_INST   (PG_CARD_MAX_APPLETS - 1) /* the ISD takes one row of the table */
#define GP_SM_MAX     4096u			/* largest command/response under SCP03 */
#define GP_PEND_MAX   4096u			/* GET RESPONSE buffer */
#define GP_SW_MEMFAIL 0x6581			/* memory failure: the commit did not happen */

struct pg_gp_card;
struct gp_inst;

/* A load file + module of the built-in catalogue (no downloaded code runs). */
struct gp_class {
	const char *name;
	uint8_t id; /* stable number in the persistent image */
	uint8_t elf_aid[PG_AID_MAX];
	size_t elf_len;
	uint8_t mod_aid[PG_AID_MAX];
	size_t mod_len;
	uint8_t def_aid[PG_AID_MAX]; /* default instance AID */
	size_t def_len;
	size_t pstate; /* bytes of persistent state: a flat array of bytes (no padding) */
	size_t vstate; /* bytes of transient state (cleared at reset) */
	/* Fresh instance: fills in->p from INSTALL parameters (C9 value; may be empty). SW. */
	uint16_t (*install)(struct gp_inst *in, const uint8_t *params, size_t n);
	/* Checks a persistent state read back from the image; 0 or PG_ECORRUPT. */
	int (*check)(const uint8_t *p);
	/* SELECT: writes the FCI into b; SW. NULL: the runtime's FCI. */
	uint16_t (*select)(struct gp_inst *in, int chn, struct pg_buf *b);
	/* A command for the instance (see struct pg_applet's process). */
	int (*process)(struct gp_inst *in, int chn, const struct pg_capdu *c, uint8_t *resp,
		       size_t *rlen, uint16_t *sw);
	/* One DGI of STORE DATA personalisation; SW. NULL: 6A80 for all. */
	uint16_t (*store_dgi)(struct gp_inst *in, uint16_t dgi, const uint8_t *d, size_t n);
	/* 1 if personalisation is complete (the last STORE DATA block then sets PERSONALIZED). */
	int (*perso_done)(const struct gp_inst *in);
};

struct gp_inst {
	const struct gp_class *cls;
	struct pg_gp_card *g;
	uint8_t aid[PG_AID_MAX];
	size_t aid_len;
	uint8_t lc;	 /* application life cycle */
	uint8_t priv[3]; /* privileges */
	int in_rt;	 /* listed in the runtime's applet table (selectable) */
	uint8_t *p;	 /* persistent state (cls->pstate bytes) */
	uint8_t *v;	 /* transient state (cls->vstate bytes) */
};

struct gp_gs { /* GET STATUS continuation of one channel */
	int active;
	uint8_t p1;
	int next; /* index of the next entry */
	uint8_t crit[PG_AID_MAX];
	size_t crit_len;
};

struct pg_gp_card {
	struct pg_card card; /* the view for link drivers */
	struct pg_card_rt *rt;
	void *(*alloc)(void *actx, size_t n);
	void (*dealloc)(void *actx, void *p);
	void *actx;
	struct pg_nvm *nvm;
	int own_nvm;
	uint32_t serial;
	/* persistent */
	uint8_t card_lc;
	uint8_t iin[8], cin[8];
	size_t iin_len, cin_len;
	struct pg_scp03_card scc;
	uint32_t cfg_version; /* GET DATA DF50: bumped by every content/rule change */
	int no_cfg_version;   /* profile: no DF50 (6A88), as a plain GP ISD */
	struct gp_inst *inst[GP_MAX_INST];
	int ninst;
	/* transient */
	struct pg_scp03 scp[GP_CH];
	uint8_t perso_aid[GP_CH][PG_AID_MAX]; /* INSTALL [for personalization] target */
	size_t perso_len[GP_CH];
	int perso_block[GP_CH]; /* next STORE DATA block number expected */
	struct gp_gs gs[GP_CH];
	uint8_t *pend; /* GET RESPONSE: the rest of a long response */
	size_t pend_len, pend_off;
	int pend_chn;
	/* the command being processed */
	const uint8_t *cur;
	size_t cur_len;
	int cur_auth; /* came C-MACed in an authenticated SCP03 session */
	int dirty;    /* persistent state changed: commit before answering */
	int commit_failed;
	uint64_t apdus; /* commands answered */
	/* buffers (capacity nvm_cap / GP_SM_MAX) */
	uint8_t *img; /* last committed image */
	size_t img_len, nvm_cap;
	uint8_t *work;
	uint8_t *plain; /* unwrapped command */
	uint8_t *resp;	/* plain response under SCP03 */
};

/* gp.c */
void *pgi_gp_alloc(struct pg_gp_card *g, size_t n);
void pgi_gp_free(struct pg_gp_card *g, void *p, size_t n); /* wipes, then releases */
/* Commits now (mid-command, e.g. a PIN try counter before the comparison); 0 or < 0. */
int pgi_gp_commit(struct pg_gp_card *g);
void pgi_gp_dirty(struct pg_gp_card *g);
/* The card's configuration (applications, life cycles, personalised data) changed. */
void pgi_gp_config_changed(struct pg_gp_card *g);
/* Brings the runtime's applet table in line with the life cycles. */
int pgi_gp_sync_table(struct pg_gp_card *g);
struct gp_inst *pgi_gp_find_inst(struct pg_gp_card *g, const uint8_t *aid, size_t n);
/* New instance (INSTALL); SW (6A84 when memory is exhausted). */
uint16_t pgi_gp_install(struct pg_gp_card *g, const struct gp_class *cls, const uint8_t *aid,
			size_t aid_len, const uint8_t priv[3], const uint8_t *params, size_t pn,
			int selectable);
void pgi_gp_delete_inst(struct pg_gp_card *g, struct gp_inst *in);
int pgi_gp_aes_ecb(const uint8_t *key, size_t klen, const uint8_t in[16], uint8_t out[16]);

/* isd.c */
extern const uint8_t pgi_gp_isd_priv[3];
int pgi_gp_isd_process(struct pg_card_rt *rt, void *state, int chn, const struct pg_capdu *c,
		       uint8_t *resp, size_t *rlen, uint16_t *sw);

/* catalogue.c */
const struct gp_class *pgi_gp_class_by_name(const char *name);
const struct gp_class *pgi_gp_class_by_id(uint8_t id);
const struct gp_class *pgi_gp_class_by_elf(const uint8_t *aid, size_t n);
int pgi_gp_class_count(void);
const struct gp_class *pgi_gp_class_at(int i);

/* INSTALL command data (GP 2.3 11.5.2.3); pointers into the input. */
struct pgi_gp_install {
	const uint8_t *elf, *mod, *app, *priv, *params, *token;
	size_t elf_len, mod_len, app_len, priv_len, params_len, token_len;
	const uint8_t *c9; /* application specific parameters (value of C9) */
	size_t c9_len;
};
/* Parses INSTALL data for P1 (04, 08, 0C, 20); PG_EFORMAT on any deviation. */
int pgi_gp_install_parse(uint8_t p1, const uint8_t *d, size_t n, struct pgi_gp_install *out);
/* One DGI (EMV CPS / GP STORE DATA): 2-byte tag, length 1 byte or FF + 2 bytes. */
struct gp_dgi {
	uint16_t tag;
	const uint8_t *val;
	size_t len;
};
/* Reads the DGI at d[0..n): bytes consumed (> 0), or PG_EFORMAT/PG_ETRUNC. */
int pgi_gp_dgi_next(struct gp_dgi *out, const uint8_t *d, size_t n);

/* applets */
extern const struct gp_class pgi_gp_class_ppse, pgi_gp_class_pay, pgi_gp_class_pin,
    pgi_gp_class_test, pgi_gp_class_aram, pgi_gp_class_echo, pgi_gp_class_transit;
/* PPSE: FCI listing the payment instances (applet_ppse.c uses this iterator). */
int pgi_gp_pay_fci_entry(const struct gp_inst *in, struct pg_ppse_fci *f);

#endif
