# SE OS (issue 7): the ARA-M access-rule parser and the client protocol decoder.
pg_fuzzer(seos_ara SOURCES ${CMAKE_CURRENT_LIST_DIR}/seos_ara.c LIBS pg_se)
pg_fuzzer(seos_client_proto SOURCES ${CMAKE_CURRENT_LIST_DIR}/seos_client_proto.c LIBS pg_se)
pg_fuzzer(seos_config SOURCES ${CMAKE_CURRENT_LIST_DIR}/seos_config.c LIBS pg_se)
pg_fuzzer(seos_connect SOURCES ${CMAKE_CURRENT_LIST_DIR}/seos_connect.c LIBS pg_se)
