# Secure-element parsers of outside bytes.
pg_fuzzer(se_apdu SOURCES ${CMAKE_CURRENT_LIST_DIR}/se_apdu.c LIBS pg_se)
pg_fuzzer(se_tlv SOURCES ${CMAKE_CURRENT_LIST_DIR}/se_tlv.c LIBS pg_se)
