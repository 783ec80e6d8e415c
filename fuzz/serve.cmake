# serve (issue 9): the HTTP API's request-body parser.
pg_fuzzer(serve_body SOURCES ${CMAKE_CURRENT_LIST_DIR}/serve_body.c LIBS pg_serve)
