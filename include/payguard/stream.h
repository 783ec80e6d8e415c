/*
 * Byte streams the SE link drivers run over. A stream carries packets: each
 * write is one packet (one frame of the link protocol above it), and a packet
 * is DATA or a line event (RESET = cold/warm reset with power, POWER_OFF) —
 * the events a card's contacts carry besides I/O. Reads are byte-oriented
 * and may span packets, as on a real wire.
 *
 * Implementations:
 *  - memory pair (in-process, single-threaded): a host-end write hands the
 *    packet straight to the card side's handler, whose writes queue bytes
 *    for the host end. No threads, no syscalls: this is how the in-process
 *    benchmarks and the fault-injection tests run. Reading an empty queue
 *    returns PG_ETIMEDOUT at once (virtual time: nothing more will come; the
 *    virtual clock advances by the timeout, see pg_stream_memory_delay()).
 *  - fd stream (socketpair, UNIX socket, TCP): packets are sent as
 *    [type:1][length:2 big-endian][payload], so frame boundaries and line
 *    events survive the socket.
 *  - fault injector: wraps a stream and corrupts or drops a share of the
 *    DATA packets written through it, from a seeded generator.
 *
 * The caller owns a stream; pg_stream_free() closes and frees it (NULL ok).
 */
#ifndef PAYGUARD_STREAM_H
#define PAYGUARD_STREAM_H

#include <stddef.h>
#include <stdint.h>

enum pg_packet_type {
	PG_PKT_DATA = 0,
	PG_PKT_RESET = 1,     /* power on / reset: the card answers with its ATR */
	PG_PKT_POWER_OFF = 2, /* the card drops its volatile state */
};

#define PG_STREAM_MAX_PACKET 65535u

struct pg_stream;

struct pg_stream_ops {
	/* Sends one packet of n bytes (n may be 0 for events). Required. */
	int (*write)(struct pg_stream *s, int type, const uint8_t *p, size_t n);
	/*
	 * Reads up to n DATA bytes, waiting at most timeout_ms (< 0: forever).
	 * Returns the count (> 0), PG_ETIMEDOUT, PG_ECLOSED or PG_EIO. Line
	 * events arriving on a host end are skipped. Required.
	 */
	int (*read)(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms);
	/* Drops any bytes already received and not read (resynchronisation). May be NULL. */
	void (*flush)(struct pg_stream *s);
	/* Closes and frees. Required. */
	void (*destroy)(struct pg_stream *s);
};

struct pg_stream {
	const struct pg_stream_ops *ops;
};

static inline int
pg_stream_write(struct pg_stream *s, const uint8_t *p, size_t n)
{
	return s->ops->write(s, PG_PKT_DATA, p, n);
}
static inline int
pg_stream_event(struct pg_stream *s, int type)
{
	return s->ops->write(s, type, NULL, 0);
}
static inline int
pg_stream_read(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms)
{
	return s->ops->read(s, p, n, timeout_ms);
}
/* Reads exactly n bytes or fails (PG_ETIMEDOUT / PG_ECLOSED / PG_EIO). */
int pg_stream_read_full(struct pg_stream *s, uint8_t *p, size_t n, int timeout_ms);
void pg_stream_flush(struct pg_stream *s);
void pg_stream_free(struct pg_stream *s);

/*
 * Card-side packet handler for the memory pair and for pg_stream_serve():
 * called with each packet the host sends; it answers by writing to `out`.
 */
typedef int (*pg_packet_fn)(void *ctx, int type, const uint8_t *p, size_t n, struct pg_stream *out);

/*
 * In-process pair. *host is the host's end; the card side is the handler,
 * which writes its answers to the stream it is given (a card end whose writes
 * land in the host end's queue). Both ends are freed by freeing *host.
 * *card_out (may be NULL) receives the card end so a fault injector can wrap
 * the card's direction too (pg_stream_memory_set_card_out()).
 */
int pg_stream_memory_pair(struct pg_stream **host, pg_packet_fn card, void *card_ctx,
			  void (*card_free)(void *card_ctx));
/* Replaces the stream the card handler writes to (e.g. an injector around it). */
void pg_stream_memory_set_card_out(struct pg_stream *host, struct pg_stream *card_out);
/* The card end of a memory pair (writes land in the host's queue). Owned by the pair. */
struct pg_stream *pg_stream_memory_card_end(struct pg_stream *host);
/*
 * Virtual time of a memory pair, in ms (either end may be given). A host
 * read on an empty queue, or on bytes not yet due, waits its whole timeout
 * in virtual time and fails with PG_ETIMEDOUT; bytes due within the timeout
 * advance the clock to when they are due. pg_stream_memory_delay() makes
 * what the card has queued, and queues until the host flushes, due `ms`
 * from now: a card handler that takes its time without a real clock.
 */
int pg_stream_memory_delay(struct pg_stream *s, uint32_t ms);
uint64_t pg_stream_memory_now(struct pg_stream *s);

/* Stream over a connected fd (socket or pipe pair: rfd may equal wfd). Takes the fds. */
int pg_stream_fd(struct pg_stream **out, int rfd, int wfd);
/*
 * Connects to "unix:/path", "tcp:host:port" or "/path" (UNIX socket).
 * Listening: pg_stream_listen() returns a listening fd for the same syntax.
 */
int pg_stream_connect(struct pg_stream **out, const char *addr, int timeout_ms);
int pg_stream_listen(const char *addr);
/*
 * Card-side loop over an fd stream: reads packets and hands each to fn until
 * the peer closes (returns 0) or fn fails. Used by `payguard se sim`.
 */
int pg_stream_serve_fd(int fd, pg_packet_fn fn, void *ctx);

/*
 * Fault injector: each DATA packet written through it is, with the given
 * probabilities (per million), dropped or corrupted (one random bit flipped);
 * events pass untouched. `inner` is owned by the injector.
 */
struct pg_fault_stats {
	uint64_t packets, dropped, corrupted;
};
int pg_stream_faulty(struct pg_stream **out, struct pg_stream *inner, uint32_t drop_ppm,
		     uint32_t corrupt_ppm, uint64_t seed);
void pg_stream_faulty_stats(struct pg_stream *s, struct pg_fault_stats *st);
/* Wraps a stream without owning it (for the card end of a memory pair). */
int pg_stream_faulty_borrow(struct pg_stream **out, struct pg_stream *inner, uint32_t drop_ppm,
			    uint32_t corrupt_ppm, uint64_t seed);

#endif
