# Load area harnesses: the trace readers (ours, Bitbrains and the public traces)
# and the Prometheus response parser.
pg_fuzzer(load_bitbrains SOURCES ${CMAKE_CURRENT_LIST_DIR}/load_bitbrains.c LIBS pg_load)
pg_fuzzer(load_csv SOURCES ${CMAKE_CURRENT_LIST_DIR}/load_csv.c LIBS pg_load)
pg_fuzzer(load_prom SOURCES ${CMAKE_CURRENT_LIST_DIR}/load_prom.c LIBS pg_load)
pg_fuzzer(load_matrix SOURCES ${CMAKE_CURRENT_LIST_DIR}/load_matrix.c LIBS pg_load)
pg_fuzzer(load_traces SOURCES ${CMAKE_CURRENT_LIST_DIR}/load_traces.c LIBS pg_load)
pg_fuzzer(load_prom_spec SOURCES ${CMAKE_CURRENT_LIST_DIR}/load_prom_spec.c LIBS pg_load)
pg_fuzzer(load_num SOURCES ${CMAKE_CURRENT_LIST_DIR}/load_num.c LIBS pg_load)
