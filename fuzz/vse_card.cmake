# GP card (issue 3): STORE DATA personalisation (DGI), INSTALL parameters, and the whole
# card runtime fed arbitrary command sequences (in and out of SCP03 sessions).
pg_fuzzer(vse_card_dgi SOURCES ${CMAKE_CURRENT_LIST_DIR}/vse_card_dgi.c LIBS pg_se pg_se_double)
pg_fuzzer(vse_card_install SOURCES ${CMAKE_CURRENT_LIST_DIR}/vse_card_install.c LIBS pg_se pg_se_double)
pg_fuzzer(vse_card_apdus SOURCES ${CMAKE_CURRENT_LIST_DIR}/vse_card_apdus.c LIBS pg_se pg_se_double)
