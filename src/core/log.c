/* Leveled logging to stderr with a timestamp, level and subsystem. */
#include "payguard/log.h"
#include "payguard/error.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int pg_log_threshold = PG_LOG_WARN;
static char log_tag[32];
static _Thread_local char last_error[512];

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void
pg_log_set_level(int level)
{
	if (level < PG_LOG_ERROR)
		level = PG_LOG_ERROR;
	if (level > PG_LOG_TRACE)
		level = PG_LOG_TRACE;
	pg_log_threshold = level;
}

int
pg_log_parse_level(const char *name)
{
	for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
		if (name && strcasecmp(name, level_names[i]) == 0)
			return i;
	return PG_EINVAL;
}

void
pg_log_set_tag(const char *tag)
{
	snprintf(log_tag, sizeof(log_tag), "%s", tag ? tag : "");
}

void
pg_log_vwrite(int level, const char *subsys, const char *fmt, va_list ap)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	size_t n;

	if (level < PG_LOG_ERROR || level > PG_LOG_TRACE)
		level = PG_LOG_ERROR;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n +=
	    (size_t)snprintf(line + n, sizeof(line) - n,
			     ".%03ldZ %s%s%s %s: ", ts.tv_nsec / 1000000, log_tag[0] ? log_tag : "",
			     log_tag[0] ? " " : "", level_names[level], subsys ? subsys : "-");
	if (n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	/* One write per line so lines from several processes do not interleave. */
	fprintf(stderr, "%s\n", line);
}

void
pg_log_write(int level, const char *subsys, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pg_log_vwrite(level, subsys, fmt, ap);
	va_end(ap);
}

int
pg_error(int code, const char *subsys, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	pg_debug(subsys, "%s [%s]", last_error, pg_errname(code));
	return code;
}

int
pg_error_ctx(int code, const char *subsys, const char *fmt, ...)
{
	char old[1024], pre[1024];
	va_list ap;

	/* the previous detail is copied first: pg_error() writes the same buffer */
	snprintf(old, sizeof(old), "%s", last_error);
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	return pg_error(code, subsys, "%s: %s", pre, old[0] ? old : pg_strerror(code));
}

const char *
pg_last_error(void)
{
	return last_error;
}

void
pg_clear_error(void)
{
	last_error[0] = '\0';
}
