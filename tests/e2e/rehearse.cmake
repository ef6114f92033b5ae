# Restore rehearsals of the shipped AsterDrive policies (included from
# tests/e2e/CMakeLists.txt): a generated deployment with tens of thousands
# of rows per policy, every shipped check and the doctor against the
# scratch copy, production unchanged, a missing blob named.
coffer_e2e_test(NAME e2e_rehearse_sqlite SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/rehearse_sqlite.sh)
coffer_e2e_test(NAME e2e_rehearse_postgres SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/rehearse_postgres.sh LABELS server)
coffer_e2e_test(NAME e2e_rehearse_mysql SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/rehearse_mysql.sh LABELS server)
coffer_e2e_test(NAME e2e_rehearse_s3 SCRIPT ${CMAKE_CURRENT_SOURCE_DIR}/rehearse_s3.sh LABELS server)
