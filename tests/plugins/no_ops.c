/* no_ops: claims to be a strategy but carries no strategy ops table. */
#include <fulcrum/plugin.h>

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "no_ops", .version = "0.0.1",
                     .description = "test: no ops table");
