/*
 * payguard error codes: every function returns 0 (or a count) on success and
 * a negative PG_E... code on failure. One X-macro list makes both the enum and
 * the messages; codes are grouped in ranges per area so a number in a log line
 * says where it came from. Add a code in its area's block only.
 */
#ifndef PAYGUARD_ERROR_H
#define PAYGUARD_ERROR_H

#define PG_ERRORS(X)                                                                               \
	/* core: -1 .. -99 */                                                                      \
	X(PG_EINVAL, -1, "invalid argument")                                                       \
	X(PG_ENOMEM, -2, "out of memory")                                                          \
	X(PG_EIO, -3, "input/output error")                                                        \
	X(PG_ENOENT, -4, "no such entry")                                                          \
	X(PG_EEXIST, -5, "already exists")                                                         \
	X(PG_ERANGE, -6, "value out of range")                                                     \
	X(PG_ETOOBIG, -7, "input larger than its limit")                                           \
	X(PG_ETRUNC, -8, "input truncated")                                                        \
	X(PG_EFORMAT, -9, "malformed input")                                                       \
	X(PG_ENOTSUP, -10, "not supported")                                                        \
	X(PG_ETIMEDOUT, -11, "timed out")                                                          \
	X(PG_ECLOSED, -12, "connection closed")                                                    \
	X(PG_EPERM, -13, "permission denied")                                                      \
	X(PG_ESTORE, -14, "store error")                                                           \
	X(PG_ECRYPTO, -15, "cryptographic operation failed")                                       \
	X(PG_EAUTH, -16, "authentication failed")                                                  \
	X(PG_ESYS, -17, "system call failed")                                                      \
	X(PG_EBUSY, -18, "resource busy")                                                          \
	X(PG_EAGAIN, -19, "try again")                                                             \
	X(PG_ESTATE, -20, "operation not allowed in this state")                                   \
	X(PG_EUSAGE, -21, "bad command-line usage")                                                \
	X(PG_ECORRUPT, -22, "data corrupt")                                                        \
	X(PG_EINTR, -23, "interrupted")                                                            \
	X(PG_EUNIQUE, -24, "unique constraint violated")                                           \
	X(PG_ECONNLOST, -25, "store connection lost")                                              \
	/* secure elements (codec, link, converter, card, vse, seos, nfcswitch): -100 .. -299 */   \
	X(PG_EPROTO, -100, "protocol error")                                                       \
	X(PG_ELINK, -101, "link failure")                                                          \
	X(PG_ENOCARD, -102, "no card present")                                                     \
	X(PG_ERESYNC, -103, "link resynchronised; command may need re-sending")                    \
	X(PG_EPCSC, -104, "PC/SC error")                                                           \
	X(PG_ENOCHAN, -105, "no such channel")                                                     \
	/* image: -300 .. -399 */                                                                  \
	X(PG_EIMAGE, -300, "image error")                                                          \
	/* load: -400 .. -499 */                                                                   \
	X(PG_ELOAD, -400, "load estimation error")                                                 \
	/* pos: -500 .. -599 */                                                                    \
	X(PG_EPOS, -500, "POS error")                                                              \
	/* serve: -600 .. -699 */                                                                  \
	X(PG_ESERVE, -600, "service error")

enum pg_error {
	PG_OK = 0,
#define PG_ERROR_ENUM(name, value, msg) name = value,
	PG_ERRORS(PG_ERROR_ENUM)
#undef PG_ERROR_ENUM
};

/* Message for a code; never NULL. Unknown codes get a generic message. */
const char *pg_strerror(int code);

/* Name of a code ("PG_EINVAL"), for logs and JSON; never NULL. */
const char *pg_errname(int code);

#endif
