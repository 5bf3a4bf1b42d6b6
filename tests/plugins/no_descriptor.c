/*
 * no_descriptor: a well-formed shared object that exports a symbol, but not
 * fc_plugin, as a library dropped into the plugin folder by mistake would.
 */
#include <fulcrum/plugin.h>

FC_PLUGIN_EXPORT const int fc_plugin_version = 1;
