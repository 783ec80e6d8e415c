/* Error-code messages: the one place that turns PG_E... codes into text. */
#include "payguard/error.h"

const char *
pg_strerror(int code)
{
	switch (code) {
	case PG_OK:
		return "success";
#define PG_ERROR_MSG(name, value, msg)                                                             \
	case name:                                                                                 \
		return msg;
		PG_ERRORS(PG_ERROR_MSG)
#undef PG_ERROR_MSG
	}
	return "unknown error";
}

const char *
pg_errname(int code)
{
	switch (code) {
	case PG_OK:
		return "PG_OK";
#define PG_ERROR_NAME(name, value, msg)                                                            \
	case name:                                                                                 \
		return #name;
		PG_ERRORS(PG_ERROR_NAME)
#undef PG_ERROR_NAME
	}
	return "PG_E?";
}
