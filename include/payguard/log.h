/*
 * Logging to stderr with levels. The macros test the level before they
 * evaluate their arguments, so a debug line costs one compare when off.
 * Secrets (keys, PINs, cryptograms) are never passed to these functions;
 * use pg_log_redacted() where a value's presence matters but not its bytes.
 */
#ifndef PAYGUARD_LOG_H
#define PAYGUARD_LOG_H

#include <stdarg.h>

enum pg_log_level {
	PG_LOG_ERROR = 0,
	PG_LOG_WARN = 1,
	PG_LOG_INFO = 2,
	PG_LOG_DEBUG = 3,
	PG_LOG_TRACE = 4,
};

extern int pg_log_threshold;

void pg_log_set_level(int level);
/* Parses "error|warn|info|debug|trace"; returns the level or PG_EINVAL. */
int pg_log_parse_level(const char *name);
/* Optional prefix on every line (process role, e.g. "vse[3]"). Copied. */
void pg_log_set_tag(const char *tag);

void pg_log_write(int level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pg_log_vwrite(int level, const char *subsys, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define pg_log(level, subsys, ...)                                                                 \
	do {                                                                                       \
		if ((level) <= pg_log_threshold)                                                   \
			pg_log_write((level), (subsys), __VA_ARGS__);                              \
	} while (0)

#define pg_err(subsys, ...)   pg_log(PG_LOG_ERROR, subsys, __VA_ARGS__)
#define pg_warn(subsys, ...)  pg_log(PG_LOG_WARN, subsys, __VA_ARGS__)
#define pg_info(subsys, ...)  pg_log(PG_LOG_INFO, subsys, __VA_ARGS__)
#define pg_debug(subsys, ...) pg_log(PG_LOG_DEBUG, subsys, __VA_ARGS__)
#define pg_trace(subsys, ...) pg_log(PG_LOG_TRACE, subsys, __VA_ARGS__)

/*
 * Records a detail message for the failure (the thread's last error, which a
 * command prints to the user), logs it at debug level and returns the code,
 * so callers write `return pg_error(PG_EFORMAT, "tlv", "length %zu past end", n);`.
 */
int pg_error(int code, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* pg_error() whose detail is "<fmt>: <the previous detail>" (or the code's
 * name when there was none): context added on the way up, as
 * `pg_error_ctx(rc, "qcow2", "'%s'", path)`. */
int pg_error_ctx(int code, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The detail of this thread's last pg_error(), "" if none. Never NULL. */
const char *pg_last_error(void);
void pg_clear_error(void);

/* Evaluates expr; if negative, logs `what` with the code and jumps to label. */
#define PG_TRY_GOTO(expr, label, subsys, what)                                                     \
	do {                                                                                       \
		rc = (expr);                                                                       \
		if (rc < 0) {                                                                      \
			pg_debug(subsys, "%s: %s (%d)", what, pg_strerror(rc), rc);                \
			goto label;                                                                \
		}                                                                                  \
	} while (0)

#endif
