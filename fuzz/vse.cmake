# VSE (seed 6): the hypervisor's socket-API request decoder and the VSE card's command processing.
pg_fuzzer(vse_request SOURCES ${CMAKE_CURRENT_LIST_DIR}/vse_request.c LIBS pg_vse)
pg_fuzzer(vse_vcard SOURCES ${CMAKE_CURRENT_LIST_DIR}/vse_vcard.c LIBS pg_vse)
