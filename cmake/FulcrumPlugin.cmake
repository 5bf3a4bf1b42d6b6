# fc_add_plugin(NAME SOURCES... [LIBS libs...])
#
# Builds a plugin exactly as a third-party one would be built: a MODULE library
# named NAME.so (no "lib" prefix) that sees only the SDK header, with hidden
# visibility so that the descriptor is its one exported symbol. Bundled plugins
# land in ${CMAKE_BINARY_DIR}/plugins, test plugins in ${CMAKE_BINARY_DIR}/tests/plugins.
function(fc_add_plugin name)
    cmake_parse_arguments(P "TEST" "" "LIBS" ${ARGN})
    add_library(${name} MODULE ${P_UNPARSED_ARGUMENTS})
    set_target_properties(${name} PROPERTIES PREFIX "" C_VISIBILITY_PRESET hidden)
    target_link_libraries(${name} PRIVATE fulcrum_sdk ${P_LIBS})
    target_compile_options(${name} PRIVATE ${FC_WARNINGS})
    # Everything a plugin uses must resolve inside it or its own libraries.
    target_link_options(${name} PRIVATE -Wl,--no-undefined)
    if(P_TEST)
        set_target_properties(${name} PROPERTIES
            LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests/plugins)
    else()
        set_property(GLOBAL APPEND PROPERTY FC_BUNDLED_PLUGINS ${name})
        set_target_properties(${name} PROPERTIES
            LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/plugins)
        install(TARGETS ${name} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/fulcrum/plugins)
    endif()
endfunction()
