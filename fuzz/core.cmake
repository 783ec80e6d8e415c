# core (issue 14): the store URL as logs name it, from the command line or serve.json.
pg_fuzzer(core_db_redact SOURCES ${CMAKE_CURRENT_LIST_DIR}/core_db_redact.c)
