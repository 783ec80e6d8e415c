# serve (issue 9): the HTTP API's request-body parser and the configuration file.
pg_fuzzer(serve_body SOURCES ${CMAKE_CURRENT_LIST_DIR}/serve_body.c LIBS pg_serve)
pg_fuzzer(serve_conf SOURCES ${CMAKE_CURRENT_LIST_DIR}/serve_conf.c LIBS pg_serve)
# issue 13: the request guard's Host, Origin and Content-Type checks.
pg_fuzzer(serve_guard SOURCES ${CMAKE_CURRENT_LIST_DIR}/serve_guard.c LIBS pg_serve)
# issue 16: the route table's path patterns over URLs a client chose.
pg_fuzzer(serve_pathmatch SOURCES ${CMAKE_CURRENT_LIST_DIR}/serve_pathmatch.c LIBS pg_serve)
