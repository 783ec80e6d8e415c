/*
 * The GlobalPlatform card (issue 3): the card runtime of card.h grown into a
 * GP 2.3 card — issuer security domain with SCP03, GET STATUS, INSTALL /
 * DELETE / STORE DATA of applets from a built-in catalogue (PPSE, EMV-style
 * payment, PIN and key store), life cycles, GET RESPONSE chaining — whose
 * persistent state lives in a tear-safe store (pg_nvm). docs/se-card.md.
 */
#ifndef PAYGUARD_CARD_GP_H
#define PAYGUARD_CARD_GP_H

#include "payguard/buf.h"
#include "payguard/card.h"
#include "payguard/scp03.h"

#include <stddef.h>
#include <stdint.h>

/* ---- persistent memory: two slots, each a whole image with generation + SHA-256 ---- */

struct pg_nvm;

#define PG_NVM_MAX (1u << 20) /* largest image capacity (1 MiB) */

/*
 * Persistent memory in a file the host opened (read/write); the fd stays the
 * caller's (not closed). The file takes 2 * (64 + capacity) bytes. Works
 * under seccomp: only pread, pwrite and fdatasync are used after open.
 */
int pg_nvm_open_fd(struct pg_nvm **out, int fd, size_t capacity);
/* Persistent memory in this process's heap (simulated cards, tests). */
int pg_nvm_open_memory(struct pg_nvm **out, size_t capacity);
void pg_nvm_close(struct pg_nvm *n);
/*
 * Reads the newest intact image into buf: *len = its length (0: blank, no
 * image yet). PG_ETOOBIG if it does not fit cap.
 */
int pg_nvm_load(struct pg_nvm *n, uint8_t *buf, size_t cap, size_t *len);
/*
 * Atomically replaces the image: writes the older slot (data, then header
 * with generation + 1 and SHA-256), then fdatasync. A cut at any point leaves
 * the old image or the new one. PG_ERANGE if len > capacity.
 */
int pg_nvm_commit(struct pg_nvm *n, const uint8_t *img, size_t len);
/* Generation of the current image (0: blank). */
uint64_t pg_nvm_generation(const struct pg_nvm *n);
/*
 * Test hook (power cut): the commit that writes byte number `bytes` (counted
 * from now, >= 0) writes only the bytes before it and then, for a file,
 * raises SIGKILL; for memory, fails with PG_EIO and every later call fails
 * until the store is reopened. -1 turns it off.
 */
void pg_nvm_tear_after(struct pg_nvm *n, long bytes);
/* A memory store's raw bytes (both slots), to copy a "powered off" card (tests). */
int pg_nvm_memory_snapshot(const struct pg_nvm *n, uint8_t *buf, size_t cap, size_t *len);
int pg_nvm_memory_restore(struct pg_nvm *n, const uint8_t *buf, size_t len);

/* ---- the GP card ---- */

/* Card life cycle states (GP 2.3 11.1.1). */
#define PG_GP_CARD_OP_READY    0x01
#define PG_GP_CARD_INITIALIZED 0x07
#define PG_GP_CARD_SECURED     0x0F
#define PG_GP_CARD_LOCKED      0x7F
#define PG_GP_CARD_TERMINATED  0xFF
/* Application life cycle states (GP 2.3 11.1.1, table 11-5). */
#define PG_GP_APP_INSTALLED    0x03
#define PG_GP_APP_SELECTABLE   0x07
#define PG_GP_APP_PERSONALIZED 0x0F
#define PG_GP_APP_LOCKED       0x80 /* bit 8 over the previous state */

/* AIDs of the catalogue's load files' default instances. */
extern const uint8_t pg_gp_ppse_aid[14]; /* "2PAY.SYS.DDF01" */
extern const uint8_t pg_gp_pay_aid[7];	 /* F0 "PGPAY" 01 */
extern const uint8_t pg_gp_pin_aid[7];	 /* F0 "PGPIN" 01 */

/*
 * The PPSE's FCI (EMV Book B 3.3): 6F { 84 "2PAY.SYS.DDF01", A5 { BF0C {
 * 61 { 4F AID, 50 label, 87 priority } ... } } }, built by the card's PPSE
 * applet and by anything answering a PPSE for several cards (the NFC switch).
 * open, one entry per application (label may be NULL), close.
 */
struct pg_ppse_fci {
	struct pg_buf *b;
	size_t m6f, ma5, mbf;
};
int pg_ppse_fci_open(struct pg_ppse_fci *f, struct pg_buf *b);
int pg_ppse_fci_entry(struct pg_ppse_fci *f, const uint8_t *aid, size_t aid_len, const char *label,
		      size_t label_len, uint8_t priority);
int pg_ppse_fci_close(struct pg_ppse_fci *f);

struct pg_gp_card;

struct pg_gp_config {
	const uint8_t *atr; /* NULL: the runtime's default ATR */
	size_t atr_len;
	uint32_t serial;		  /* IC serial number (CPLC) */
	const struct pg_scp03_keys *keys; /* ISD key set on a blank card (NULL: 40..4F test keys) */
	uint8_t cin[8];			  /* card image number (tag 45) on a blank card */
	struct pg_nvm *nvm;		  /* NULL: a memory store of nvm_capacity */
	size_t nvm_capacity;		  /* 0: 16 KiB */
	/*
	 * Applets installed, selectable, on a blank card: catalogue names, each
	 * at its default AID or, written "name@AIDHEX", at that AID; then
	 * optionally ",prio=N" (1..15) and ",label=TEXT" (1..16 bytes, no comma):
	 * the INSTALL parameters (C9) of payment and transit.
	 */
	const char *const *applets;
	int n_applets;
	/* The card profile's further blank-card data (all optional): */
	const uint8_t *iin; /* IIN (tag 42), 1..8 bytes; NULL: none */
	size_t iin_len;
	uint32_t cfg_version; /* first configuration version (GET DATA DF50); 0: as installed */
	/* ARA-M rules (REF-AR-DOs, the value of FF40) stored in the "aram" applet */
	const uint8_t *aram_rules;
	size_t aram_rules_len;
	int no_cfg_version; /* GET DATA DF50 answers 6A88, as a plain GP ISD does */
	/*
	 * Allocator for every object of the card (the VSE passes its arena:
	 * pg_arena_alloc / pg_arena_dealloc). NULL: calloc/free. Exhaustion
	 * answers 6A84.
	 */
	void *(*alloc)(void *actx, size_t n);
	void (*dealloc)(void *actx, void *p);
	void *actx;
};

int pg_gp_card_new(struct pg_gp_card **out, const struct pg_gp_config *cfg);
void pg_gp_card_free(struct pg_gp_card *c);
/* The struct pg_card view for link drivers (valid while c lives). */
const struct pg_card *pg_gp_card_card(struct pg_gp_card *c);
/* The canonical persistent image (what the next commit would write); its length. */
int pg_gp_card_image(struct pg_gp_card *c, uint8_t *buf, size_t cap);
/* Sets the configuration version (GET DATA DF50) and commits it. */
int pg_gp_card_set_config_version(struct pg_gp_card *c, uint32_t version);
/* Commands the card has answered since it was made. */
uint64_t pg_gp_card_apdus(const struct pg_gp_card *c);
/* Catalogue names, "ppse, payment, pin, test, aram, echo, transit"; 1 if name is one of them. */
const char *pg_gp_catalogue_names(void);
int pg_gp_catalogue_known(const char *name);

#endif
