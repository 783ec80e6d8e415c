# serve (issue 9): the HTTP API's request-body parser and the configuration file.
pg_fuzzer(serve_body SOURCES ${CMAKE_CURRENT_LIST_DIR}/serve_body.c LIBS pg_serve)
pg_fuzzer(serve_conf SOURCES ${CMAKE_CURRENT_LIST_DIR}/serve_conf.c LIBS pg_serve)
