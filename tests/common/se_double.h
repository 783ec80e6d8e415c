/*
 * The secure-element test double: the scripted and misbehaving peers that
 * the se unit tests (tests/unit/se) and the se/vse fuzz harnesses (fuzz/)
 * share (issue 16, Build item 1). One copy, compiled once into the static
 * library pg_se_double (tests/common/CMakeLists.txt):
 *  - a scripted card stream: the host reads the script's bytes (a card's
 *    answers, or a fuzz input), then times out (a mute card); what the host
 *    writes is counted, the last packet kept, and dropped; and a card that
 *    follows a script of steps, checking what the host sends;
 *  - an echo card (struct pg_card) that answers any length, and a test
 *    card with counters (executed, sequence errors, resets) and knobs
 *    (ATR, slow, mute, absent);
 *  - feeders that hand packets to a link's card role and drive a host role
 *    against a scripted card (the fuzzers' way in, OpenSC's fake reader);
 *  - a socketpair whose card role is served in a thread;
 *  - an SCP03 host session against a card's ISD (GP Amendment D).
 * Misbehaviour knobs that belong to one link (wrong PCB, WTX storms, bad
 * CCID messages) stay with the test that needs them; they are built on
 * these pieces.
 */
#ifndef PG_TESTS_SE_DOUBLE_H
#define PG_TESTS_SE_DOUBLE_H

#include "payguard/link.h"
#include "payguard/scp03.h"
#include "payguard/stream.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* ---- scripted card stream ---- */

#define SD_LAST_MAX 300 /* room for the last packet written (a whole T=1 block) */

struct sd_stream {
	struct pg_stream base;
	const uint8_t *p; /* the script, not copied */
	size_t n, off;
	int heap;	 /* destroy frees the struct (sd_script_new) */
	unsigned writes; /* DATA packets written to the card */
	uint8_t last[SD_LAST_MAX];
	size_t lastn;
};

/* A stream on the caller's storage (destroy leaves it); p may be NULL (a sink). */
void sd_script_init(struct sd_stream *s, const uint8_t *p, size_t n);
/* The same on the heap, freed by pg_stream_free() or the link that owns it; aborts on ENOMEM. */
struct pg_stream *sd_script_new(const uint8_t *p, size_t n);

/*
 * A card that follows a script of steps: each packet the host writes must
 * equal the next step's `host` bytes (hex), whose `card` bytes (hex; "" is
 * a time-out) are then queued for the host to read; the ATR (hex) answers a
 * reset. Wrong lengths, wrong PCBs, bad EDCs, WTX requests: whatever the
 * steps say. The first difference is kept in `mismatch`.
 */
struct sd_step {
	const char *host, *card;
};

struct sd_steps {
	struct pg_stream base;
	const char *atr;
	const struct sd_step *steps;
	int i, nsteps; /* i: steps done */
	char mismatch[200];
	uint8_t q[512];
	size_t qn, qoff;
};

/* On the caller's storage (destroy leaves it). */
void sd_steps_init(struct sd_steps *k, const char *atr, const struct sd_step *steps, int nsteps);

/* ---- tap: records, drops and corrupts chosen packets on their way ---- */

/*
 * A stream wrapper on one direction of a link (the host's stream, or a
 * memory pair's card end). Every DATA packet gets a 0-based index; its
 * first 4 bytes and length are kept (head, len) for the test to read.
 * The fate of a packet is the hook's when there is one (it sees every
 * packet, RESET included, and can render a trace), else: dropped when its
 * index is in `drop` (ends at (size_t)-1). A corrupted packet has bit 0 of
 * its last byte flipped (a T=1 epilogue, an SWP CRC). T=0/T=1 traces
 * (tests/unit/se/t01_testkit.h) and the SWP/SPI/CCID taps
 * (swp_testcard.h) are this one stream.
 */
#define SD_TAP_MAX (1u << 18)
enum sd_fate { SD_PASS, SD_DROP, SD_CORRUPT };
struct sd_tap {
	struct pg_stream base;
	struct pg_stream *inner;
	int owns; /* destroy frees inner too */
	int keep; /* destroy leaves the struct for the test to read (then free()) */
	size_t count;
	uint8_t head[SD_TAP_MAX][4]; /* first bytes of each DATA packet */
	size_t len[SD_TAP_MAX];
	uint8_t last[4];    /* first bytes of the last DATA packet */
	const size_t *drop; /* DATA packet indexes to drop; ends at (size_t)-1 */
	/* type is PG_PKT_*; index is the DATA packet's (not counted for others) */
	enum sd_fate (*hook)(void *ctx, int type, const uint8_t *p, size_t n, size_t index);
	void *ctx;
};
/* A tap on inner (owns: destroy frees inner); aborts on ENOMEM. */
struct sd_tap *sd_tap_new(struct pg_stream *inner, int owns, const size_t *drop);

/* ---- echo card ---- */

/*
 * A C-APDU with data is answered with its data (the bytes after the 5-byte
 * header) and 9000; one without, with P2 bytes of A5 and 9000 ("any length":
 * chaining, 61xx, 6Cxx). ATR 3B 02 14 50.
 */
int sd_echo_process(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen);
extern const struct pg_card sd_echo_card;

/* ---- test card: a pg_card with counters and knobs ---- */

#define SD_INS_ECHO	      0x10 /* returns the command data (Lc bytes, whatever Le) */
#define SD_INS_CASES	      0x12 /* by APDU case: 2 Le pattern bytes, 3 none (sums), 4 min(Lc, Le) */
#define SD_INS_SEQ	      0x20 /* 8-byte sequence number, must grow; returns it + executed */
#define SD_INS_SEQ_NEXT	      0x22 /* 4-byte sequence number, must be the last + 1; echoed */
#define SD_INS_SW	      0x30 /* returns no data and SW = P1 P2 */
#define SD_INS_STORE	      0x40 /* takes data, returns 9000 only */
#define SD_INS_MANAGE_CHANNEL 0x70 /* P1 00: open, returns channel 1; P1 80: close */
#define SD_INS_GETN	      0xCA /* returns P1P2 bytes (0000 = 65536) of sd_pattern(): outgoing */

struct sd_tcard {
	/* knobs, set by the test */
	const uint8_t *atr; /* NULL: 3B 0D "payguard-test" (a plain T=0 ATR) */
	size_t atrlen;
	int sleep_ms; /* before every command: a slow card */
	int mute;     /* process fails with PG_EIO: a card that answers nothing */
	int absent;   /* atr fails with PG_ENOCARD: no card in the slot */
	/* what the card saw */
	uint64_t executed;   /* every command the application ran */
	uint64_t last_seq;   /* SD_INS_SEQ / SD_INS_SEQ_NEXT */
	uint64_t dup_seq;    /* SD_INS_SEQ numbers that did not grow (executed twice) */
	uint64_t seq_errors; /* SD_INS_SEQ_NEXT numbers seen twice or skipped */
	uint64_t resets;
	uint32_t last_sum; /* sum of the last SD_INS_CASES case-3 data field */
	size_t last_clen;
};

/* The byte pattern of SD_INS_GETN. */
static inline uint8_t
sd_pattern(size_t i)
{
	return (uint8_t)((i * 7 + 3) ^ (i >> 8));
}

/* The pg_card of t (t stays the test's). */
struct pg_card sd_tcard(struct sd_tcard *t);

/* ---- feeders ---- */

enum sd_framing {
	SD_LEN8,  /* [len:1][bytes]...; len FF: a RESET event */
	SD_LEN16, /* [len:2 big-endian][bytes]...; a length with bit 15 set: a RESET event */
};

/* Hands the input to the card role c of ops as packets; answers go to a sink. */
void sd_feed_card_role(const struct pg_link_ops *ops, struct pg_link_card *c, const uint8_t *d,
		       size_t n, enum sd_framing f);
/* Opens a card role of ops on sd_echo_card, feeds it the input (SD_LEN16), closes it. */
void sd_fuzz_card_role(const struct pg_link_ops *ops, const struct pg_link_params *p,
		       const uint8_t *d, size_t n);
/* A host role whose card answers are the input: power on, then two APDUs. */
void sd_fuzz_host_role(const struct pg_link_ops *ops, const struct pg_link_params *p,
		       const uint8_t *d, size_t n);

/* ---- socketpair with the card role in a thread ---- */

struct sd_sock {
	/* knobs, set before sd_serve_socket/sd_open_socket (kept by them) */
	uint32_t drop_ppm, corrupt_ppm; /* faults on the card's answers (pg_stream_faulty) */
	uint64_t seed;
	/* state */
	pthread_t th;
	struct pg_link_card *card;
	int fd;
	int rc;			  /* what pg_stream_serve_fd() returned */
	struct pg_stream *faults; /* the injector on the card's answers, made on first use */
	struct pg_fault_stats card_stats; /* its figures, filled by sd_close_socket */
};

/*
 * Opens the card role of ops on card and serves it on one end of a
 * socketpair in a thread; *host_end is a stream on the other end (for a
 * host role, maybe through a fault injector).
 */
int sd_serve_socket(struct sd_sock *k, const struct pg_link_ops *ops, const struct pg_card *card,
		    const struct pg_link_params *p, struct pg_stream **host_end);
/* The same, with a host role of ops on the host end. */
int sd_open_socket(struct pg_link **out, struct sd_sock *k, const struct pg_link_ops *ops,
		   const struct pg_card *card, const struct pg_link_params *p);
/*
 * Closes the host (the card thread sees the socket close), joins, frees the
 * card role and the injector (its figures in k->card_stats); returns k->rc.
 */
int sd_close_socket(struct pg_link *l, struct sd_sock *k);

/* ---- SCP03 host session ---- */

/* The ISD key set of a card made without keys (GP test keys 40..4F, KVN 30). */
void sd_default_keys(struct pg_scp03_keys *k);
/*
 * Sends one C-APDU; the R-APDU's length, or 0 when the card refused to
 * answer. Aborts when the card claims an answer that is not a whole R-APDU
 * within the room given (a bug the fuzzers must see).
 */
size_t sd_tx(const struct pg_card *c, const uint8_t *a, size_t n, uint8_t *r, size_t cap);
/*
 * INITIALIZE UPDATE + EXTERNAL AUTHENTICATE at level sl with keys k (host
 * challenge host_ch, 8 bytes, or NULL for a random one). 0, or -1 (INITIALIZE
 * UPDATE refused, its SW on stderr), -2 (no EXTERNAL AUTHENTICATE could be
 * built), -3 (EXTERNAL AUTHENTICATE refused).
 */
int sd_scp03_open(const struct pg_card *c, struct pg_scp03 *s, const struct pg_scp03_keys *k,
		  uint8_t sl, const uint8_t *host_ch);
/*
 * Wraps a plain command in the session, sends it, unwraps the answer into
 * r (cap bytes, may be the room of p): the plain R-APDU's length (>= 2), or < 0.
 */
int sd_scp03_tx(const struct pg_card *c, struct pg_scp03 *s, const uint8_t *p, size_t n, uint8_t *r,
		size_t cap);

#endif
