# T=0 / T=1 link drivers (ISO/IEC 7816-3) and the ATR parser: parsers of
# bytes from the other end of a card link.
pg_fuzzer(se_t1_card SOURCES ${CMAKE_CURRENT_LIST_DIR}/se_t1_card.c LIBS pg_se pg_se_double)
pg_fuzzer(se_t1_host SOURCES ${CMAKE_CURRENT_LIST_DIR}/se_t1_host.c LIBS pg_se pg_se_double)
pg_fuzzer(se_t0_host SOURCES ${CMAKE_CURRENT_LIST_DIR}/se_t0_host.c LIBS pg_se pg_se_double)
pg_fuzzer(se_t0_card SOURCES ${CMAKE_CURRENT_LIST_DIR}/se_t0_card.c LIBS pg_se pg_se_double)
pg_fuzzer(se_t1_atr SOURCES ${CMAKE_CURRENT_LIST_DIR}/se_t1_atr.c LIBS pg_se)
