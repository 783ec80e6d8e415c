# NFC switch (issue 8): the slave port's HCI card-gate traffic and the routing configuration.
foreach(h nfcswitch_cardgate nfcswitch_config)
  pg_fuzzer(${h} SOURCES ${CMAKE_CURRENT_LIST_DIR}/${h}.c LIBS pg_nfcswitch pg_se)
endforeach()
