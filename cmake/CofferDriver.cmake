# coffer_add_driver(NAME <kind_name> ENTRY <entry> SOURCES ... [LIBS ...] [BUILTIN])
#
# Builds plugins/<kind_name> as a loadable module <kind_name>.so exporting
# only coffer_plugin_init. With BUILTIN, the same sources are also compiled
# (with COFFER_BUILTIN) into an object library linked into the core, whose
# entry is coffer_builtin_<entry>.
set_property(GLOBAL PROPERTY COFFER_BUILTIN_OBJS "")
set_property(GLOBAL PROPERTY COFFER_BUILTIN_LIBS "")

function(coffer_add_driver)
  cmake_parse_arguments(D "BUILTIN" "NAME;ENTRY" "SOURCES;LIBS" ${ARGN})
  add_library(${D_NAME} MODULE ${D_SOURCES})
  set_target_properties(${D_NAME} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY "${COFFER_PLUGIN_BUILD_DIR}")
  target_link_libraries(${D_NAME} PRIVATE coffer_sdk ${D_LIBS})
  target_link_options(${D_NAME} PRIVATE -Wl,--no-undefined)
  install(TARGETS ${D_NAME} LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}/coffer/plugins")
  if(D_BUILTIN)
    add_library(${D_NAME}_builtin OBJECT ${D_SOURCES})
    target_compile_definitions(${D_NAME}_builtin PRIVATE COFFER_BUILTIN)
    set_target_properties(${D_NAME}_builtin PROPERTIES C_VISIBILITY_PRESET hidden)
    target_link_libraries(${D_NAME}_builtin PRIVATE coffer_sdk ${D_LIBS})
    set_property(GLOBAL APPEND PROPERTY COFFER_BUILTIN_OBJS ${D_NAME}_builtin)
    set_property(GLOBAL APPEND PROPERTY COFFER_BUILTIN_LIBS ${D_LIBS})
  endif()
endfunction()
