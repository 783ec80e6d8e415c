# se-pcsc parsers of outside bytes: vpcd's message stream into the card role,
# and the card runtime's APDU processing driven by an arbitrary host.
pg_fuzzer(se_vpcd_msg SOURCES ${CMAKE_CURRENT_LIST_DIR}/se_vpcd_msg.c LIBS pg_se)
pg_fuzzer(se_card_apdu SOURCES ${CMAKE_CURRENT_LIST_DIR}/se_card_apdu.c LIBS pg_se)
