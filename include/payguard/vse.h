/*
 * Virtual secure elements (seed 6, "method for implementing virtual secure
 * element"): the secure element manager (SEM) turns a request carrying the
 * virtualization configuration into a VSE; the hypervisor's virtual machine
 * monitor gives each VSE its own address space — a process whose card runtime
 * allocates only from one arena of the requested size (include/payguard/arena.h),
 * with guard pages, resource limits and a seccomp filter — and exposes it on a
 * link (a socket with a card-role link driver, or a vpcd reader in pcscd).
 * docs/se-vse.md describes the request, the address-space and threat models.
 */
#ifndef PAYGUARD_VSE_H
#define PAYGUARD_VSE_H

#include "payguard/link.h"
#include "payguard/scp03.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define PG_VSE_NAME_MAX	       32 /* [a-z0-9][a-z0-9_-]*: no path characters */
#define PG_VSE_MAX_APPLETS     8
#define PG_VSE_APPLET_NAME_MAX 16
#define PG_VSE_ARENA_MIN       (32u * 1024u) /* the GP card needs ~50 KiB: smaller fails at start */
#define PG_VSE_ARENA_MAX       (256u * 1024u * 1024u)
#define PG_VSE_PMEM_MIN	       4096u
#define PG_VSE_PMEM_MAX	       (1024u * 1024u) /* PG_NVM_MAX, the card image's limit */
#define PG_VSE_ADDR_MAX	       100
#define PG_VSE_API_MAX	       65536u		     /* largest socket-API request (JSON bytes) */
#define PG_VSE_API_ANSWER_MAX  (16u * 1024u * 1024u) /* largest answer (a list of 1024 VSEs) */
#define PG_VSE_MAX_VSES	       1024
#define PG_VSE_VPCD_SLOTS      16 /* pcscd lists at most 16 vpcd readers */

/* How the VSE is exposed. */
struct pg_vse_expose {
	char link[8]; /* t0 t1 swp spi i2c ccid (card role on a socket) or vpcd */
	/* Sockets: "" (a UNIX socket in the VSE's directory) or "tcp:127.0.0.1:PORT". */
	char listen[PG_VSE_ADDR_MAX];
	int vpcd_slot;			 /* vpcd: reader slot 0..15 (TCP port 35963 + slot) */
	char vpcd_host[PG_VSE_ADDR_MAX]; /* vpcd: "127.0.0.1" unless given */
};

/* The virtualization configuration of one VSE (the SEM's request). */
struct pg_vse_request {
	char name[PG_VSE_NAME_MAX + 1];
	uint64_t arena_size; /* bytes of the card runtime's address space */
	uint64_t pmem_size;  /* bytes of persistent memory (the card's image) */
	int n_applets;
	char applets[PG_VSE_MAX_APPLETS][PG_VSE_APPLET_NAME_MAX + 1];
	/* Key set: explicit (keys), or diversified from master by the card's CIN. */
	int diversified;
	struct pg_scp03_keys keys; /* explicit, or filled by pg_vse_request_resolve_keys() */
	uint8_t master[32];
	size_t master_len;
	uint8_t cin[8]; /* card image number (GP tag 45); all zero: assigned by the hypervisor */
	int has_cin;
	struct pg_vse_expose expose;
	/*
	 * INITIALIZE UPDATEs not followed by a successful EXTERNAL AUTHENTICATE
	 * (each advances the persistent 24-bit SCP03 sequence counter): a token
	 * bucket of iu_burst tokens refilled at iu_rate a second; 0 = no limit.
	 */
	uint32_t iu_rate, iu_burst;
};
#define PG_VSE_IU_RATE_DEFAULT	1
#define PG_VSE_IU_BURST_DEFAULT 10
#define PG_VSE_IU_MAX		1000

/*
 * Builds a request from JSON (the CLI's --request file and the socket API's
 * "vse" member), validating every field: sizes within limits, names
 * well-formed, applets from the catalogue, keys of AES length, exposure
 * addresses loopback-only. On failure returns PG_EINVAL/PG_ERANGE/PG_EFORMAT
 * with a pg_error() detail naming the field; *r is then wiped.
 */
int pg_vse_request_from_json(struct pg_vse_request *r, const json_t *j);
/* JSON for storage (secrets = 1: keys included) or display (key check values only). */
json_t *pg_vse_request_to_json(const struct pg_vse_request *r, int secrets);
/* Diversifies the key set from the master by the CIN (no-op for explicit keys). */
int pg_vse_request_resolve_keys(struct pg_vse_request *r);
/* Parses "65536", "64K", "1M" (binary units); PG_EFORMAT/PG_ERANGE. */
int pg_vse_parse_size(const char *s, uint64_t *out);
/* 1 if the name is a well-formed VSE name. */
int pg_vse_name_ok(const char *name);
/* 1 if the applet is in the card catalogue. The catalogue as "a, b" (static). */
int pg_vse_applet_known(const char *name);
const char *pg_vse_catalogue(void);

/* ---- socket API (length-prefixed JSON: 4-byte big-endian length, then the object) ---- */

enum pg_vse_op {
	PG_VSE_OP_CREATE = 1,
	PG_VSE_OP_LIST,
	PG_VSE_OP_SHOW,
	PG_VSE_OP_START,
	PG_VSE_OP_STOP,
	PG_VSE_OP_DESTROY
};

struct pg_vse_api_req {
	int op;
	char name[PG_VSE_NAME_MAX + 1]; /* show/start/stop/destroy */
	struct pg_vse_request vse;	/* create */
};

/* Decodes and validates one request message (the JSON bytes, no length prefix). */
int pg_vse_api_decode(struct pg_vse_api_req *out, const uint8_t *p, size_t n);
/* "<data dir>/vse/hv.sock" */
int pg_vse_socket_path(char *out, size_t outlen);
/*
 * Manager side: sends req (the reference is stolen; NULL gives PG_ENOMEM) to the hypervisor at sock
 * and returns its answer; an {"ok":false} answer becomes the error it names (with its message as
 * the detail) and *resp is NULL.
 */
int pg_vse_api_call(const char *sock, json_t *req, json_t **resp, int timeout_ms);

/* ---- hypervisor and the VSE process ---- */

struct pg_vse_hv_opts {
	const char *data_dir; /* NULL: pg_data_dir() */
	const char *exe;      /* the payguard binary to exec for each VSE (NULL: /proc/self/exe) */
	const volatile int *stop; /* the loop ends when *stop becomes non-zero (may be NULL) */
	int ready_fd;		  /* >= 0: "ready\n" is written there once the socket listens */
	/*
	 * Non-NULL: a directory where each running socket-exposed VSE is announced
	 * to the SE OS (`payguard seos serve --watch DIR`) as NAME.se with lines
	 * link=, addr=, kind=vse; written (atomically) when it starts, removed when
	 * it stops. vpcd VSEs are not announced: the SE OS sees them through PC/SC.
	 */
	const char *announce_dir;
	/*
	 * The store holding the VSE registry (include/payguard/db.h URL: a path,
	 * "sqlite:PATH" or "postgresql://..."); NULL: DIR/payguard.db. Keys are
	 * wrapped under DIR/kek whatever the store.
	 */
	const char *store;
	/*
	 * The node this hypervisor runs on (cluster mode, several hypervisors on
	 * one PostgreSQL store); NULL or "": the local node "". It runs only the
	 * registry rows of its node; the others are listed, never touched.
	 */
	const char *node;
};
/* `payguard vse serve`: the hypervisor daemon (socket API, supervision). */
int pg_vse_serve(const struct pg_vse_hv_opts *o);

/* ---- the VSE registry (area "vse" of the store) ---- */

struct pg_db;
/* One registry row; the strings are valid during the callback only. */
struct pg_vse_entry {
	int64_t id;
	const char *name;
	const char *node;   /* the node that runs it ("" = the local hypervisor) */
	const char *config; /* the request as JSON, keys wrapped under the node's kek */
	int running;	    /* 1: it should run; 0: stopped */
	int64_t restarts;
	const char *last_exit; /* NULL when it never ended */
	int64_t created_ms, updated_ms;
};
/* Creates or brings up to date the registry's tables. */
int pg_vse_registry_migrate(struct pg_db *db);
/* Calls fn for each row (by id) of node `node`, or of every node when NULL. */
int pg_vse_registry_list(struct pg_db *db, const char *node,
			 int (*fn)(void *arg, const struct pg_vse_entry *e), void *arg);
/*
 * A row as `vse list --json` shows a VSE (id, name, node, state, pid null,
 * restarts, last_exit, address, request with keys reduced to kvn and mode),
 * for VSEs that run on another node.
 */
json_t *pg_vse_entry_json(const struct pg_vse_entry *e);
/* `payguard vse run-one`: the VSE process (fds 3 config, 4 link, 5 status from the hypervisor). */
int pg_vse_run_one(void);

/*
 * The VSE's card: the card runtime's GP card (include/payguard/card_gp.h)
 * with its allocations in the arena and its image on pmem_fd (a file made by
 * pg_vse_pmem_create). Exposed for the tests, the fuzzers and the benchmark.
 */
struct pg_vse_card;
struct pg_arena;
int pg_vse_card_new(struct pg_vse_card **out, const struct pg_vse_request *r, uint32_t serial,
		    struct pg_arena *arena, int pmem_fd);
void pg_vse_card_free(struct pg_vse_card *c);
const struct pg_card *pg_vse_card_card(struct pg_vse_card *c);
/* Creates (or checks) a persistent-memory file sized for pmem_size bytes of card image. */
int pg_vse_pmem_create(const char *path, uint64_t pmem_size);

#endif
