/*
 * `fulcrum plugin-check FILE.so [key=value ...]`: the first thing a plugin
 * author runs. It loads the plugin through the daemon's own loader, reports
 * its descriptor and ABI, creates it through the daemon's own host with the
 * keys given, over a simulated pool of four backends, and exercises its kind
 * (plugin_check_strategy.c, plugin_check_ratelimit.c,
 * plugin_check_health.c), under leak accounting of its own. It runs in the
 * fulcrum binary (main() hands it the command line) but starts no daemon.
 */
#ifndef FC_PLUGIN_CHECK_H
#define FC_PLUGIN_CHECK_H

/** Exit statuses of `fulcrum plugin-check`, part of its contract with scripts. */
enum fc_plugin_check_exit {
    FC_PLUGIN_CHECK_PASSED = 0,
    FC_PLUGIN_CHECK_FAILED = 1, /**< the plugin failed to load, to create, or a check */
    FC_PLUGIN_CHECK_USAGE = 2,  /**< a wrong command line */
};

/**
 * Runs `fulcrum plugin-check`; argv[0] is "plugin-check". Prints the report
 * to stdout; on a failure, ends with one line on stderr,
 * "fulcrum plugin-check: FILE: REASON". Returns an fc_plugin_check_exit.
 */
int fc_plugin_check_main(int argc, char **argv);

#endif
