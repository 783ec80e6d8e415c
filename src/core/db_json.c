/* JSON over the store API (include/payguard/db_json.h): binds from and rows
 * into jansson values, on either engine. */
#include "payguard/db_json.h"

int
pg_db_bind_json(struct pg_db_stmt *s, const json_t *args)
{
	int rc = 0;

	for (size_t i = 0; rc >= 0 && args && i < json_array_size(args); i++) {
		const json_t *v = json_array_get(args, i);
		int col = (int)i + 1;

		if (json_is_string(v))
			rc = pg_db_bind_text(s, col, json_string_value(v),
					     (long)json_string_length(v));
		else if (json_is_integer(v))
			rc = pg_db_bind_int64(s, col, json_integer_value(v));
		else if (json_is_boolean(v))
			rc = pg_db_bind_int64(s, col, json_is_true(v));
		else if (json_is_real(v))
			rc = pg_db_bind_double(s, col, json_real_value(v));
		else
			rc = pg_db_bind_null(s, col);
	}
	return rc;
}

json_t *
pg_db_row_json(struct pg_db_stmt *s)
{
	json_t *row = json_object();

	for (int c = 0; c < pg_db_column_count(s); c++) {
		const char *name = pg_db_column_name(s, c);
		const void *b;
		size_t len;

		switch (pg_db_column_type(s, c)) {
		case PG_DB_COL_INT64:
			json_object_set_new(row, name, json_integer(pg_db_column_int64(s, c)));
			break;
		case PG_DB_COL_NULL:
			json_object_set_new(row, name, json_null());
			break;
		case PG_DB_COL_DOUBLE:
			json_object_set_new(row, name, json_real(pg_db_column_double(s, c)));
			break;
		case PG_DB_COL_BLOB:
			b = pg_db_column_blob(s, c, &len);
			json_object_set_new(row, name, json_stringn(b, len));
			break;
		default:
			json_object_set_new(row, name, json_string(pg_db_column_text(s, c)));
		}
	}
	return row;
}

int
pg_db_run_json(struct pg_db *db, const char *sql, json_t *args, int64_t *changes)
{
	struct pg_db_stmt *s = NULL;
	int rc = pg_db_prepare(db, sql, &s);

	if (rc >= 0)
		rc = pg_db_bind_json(s, args);
	json_decref(args);
	while (rc >= 0 && (rc = pg_db_step(s)) > 0)
		;
	if (rc >= 0 && changes)
		*changes = pg_db_changes(s);
	if (s)
		pg_db_reset(s);
	return rc < 0 ? rc : 0;
}

int
pg_db_query_json(struct pg_db *db, const char *sql, json_t *args, json_t **out)
{
	struct pg_db_stmt *s = NULL;
	json_t *arr = json_array();
	int rc = pg_db_prepare(db, sql, &s);

	*out = NULL;
	if (rc >= 0)
		rc = pg_db_bind_json(s, args);
	json_decref(args);
	while (rc >= 0 && (rc = pg_db_step(s)) > 0)
		json_array_append_new(arr, pg_db_row_json(s));
	if (s)
		pg_db_reset(s);
	if (rc < 0) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return 0;
}

int
pg_db_query_int64(struct pg_db *db, const char *sql, int64_t *out)
{
	struct pg_db_stmt *s = NULL;
	int rc = pg_db_prepare(db, sql, &s);

	*out = 0;
	if (rc >= 0 && (rc = pg_db_step(s)) > 0)
		*out = pg_db_column_int64(s, 0);
	if (s)
		pg_db_reset(s);
	return rc < 0 ? rc : 0;
}
