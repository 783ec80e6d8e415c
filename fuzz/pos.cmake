# pos (seed 4): every parser of terminal or file bytes.
pg_fuzzer(pos_iso8583 SOURCES ${CMAKE_CURRENT_LIST_DIR}/pos_iso8583.c LIBS pg_pos)
pg_fuzzer(pos_celltlv SOURCES ${CMAKE_CURRENT_LIST_DIR}/pos_celltlv.c LIBS pg_pos)
pg_fuzzer(pos_csv SOURCES ${CMAKE_CURRENT_LIST_DIR}/pos_csv.c LIBS pg_pos)
pg_fuzzer(pos_fielddef SOURCES ${CMAKE_CURRENT_LIST_DIR}/pos_fielddef.c LIBS pg_pos)
pg_fuzzer(pos_engine SOURCES ${CMAKE_CURRENT_LIST_DIR}/pos_engine.c LIBS pg_pos)
pg_fuzzer(pos_txcodec SOURCES ${CMAKE_CURRENT_LIST_DIR}/pos_txcodec.c LIBS pg_pos)
