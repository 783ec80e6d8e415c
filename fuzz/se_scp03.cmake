# GP SCP03: the card's command unwrap and the host's parsers of card bytes.
pg_fuzzer(se_scp03_card SOURCES ${CMAKE_CURRENT_LIST_DIR}/se_scp03_card.c LIBS pg_se)
pg_fuzzer(se_scp03_host SOURCES ${CMAKE_CURRENT_LIST_DIR}/se_scp03_host.c LIBS pg_se)
