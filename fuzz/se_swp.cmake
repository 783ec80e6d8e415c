# SWP (SHDLC, HCP/HCI), SPI/I2C (GlobalPlatform T=1) and USB CCID link parsers.
foreach(h se_shdlc_frame se_hcp_reassembly se_swp_card se_swp_host se_spi_card se_spi_host
        se_ccid_card se_ccid_host)
  pg_fuzzer(${h} SOURCES ${CMAKE_CURRENT_LIST_DIR}/${h}.c LIBS pg_se pg_se_double)
endforeach()
