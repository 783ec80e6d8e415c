# Image area fuzz targets (seed 1): every parser of bytes from images,
# packages and advisories.
pg_fuzzer(image_qcow2 SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_qcow2.c LIBS pg_image)
pg_fuzzer(image_ptable SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_ptable.c LIBS pg_image)
pg_fuzzer(image_dpkg SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_dpkg.c LIBS pg_image)
pg_fuzzer(image_osv SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_osv.c LIBS pg_image)
pg_fuzzer(image_debtracker SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_debtracker.c LIBS pg_image)
pg_fuzzer(image_deb SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_deb.c LIBS pg_image)
