/*
 * `fulcrum ctl`: the command-line client of the admin listener (status,
 * backends, runtime changes, reload). It runs in the fulcrum binary
 * (main() hands it the command line) but shares nothing with the daemon at
 * run time: it reads the configuration file for the admin address and
 * token, sends one or two HTTP requests (ctl_http.h) and exits.
 */
#ifndef FC_CTL_H
#define FC_CTL_H

/** Exit statuses of `fulcrum ctl`, part of its contract with scripts. */
enum fc_ctl_exit {
    FC_CTL_EXIT_OK = 0,
    FC_CTL_EXIT_SERVER = 1,      /**< the server refused or failed, or answered nonsense */
    FC_CTL_EXIT_USAGE = 2,       /**< a wrong command line, configuration or token file */
    FC_CTL_EXIT_UNREACHABLE = 3, /**< the admin listener cannot be reached */
};

/**
 * Runs `fulcrum ctl`; argv[0] is "ctl", the rest its options and command.
 * Prints to stdout what was asked for and to stderr, as
 * "fulcrum ctl: MESSAGE", what went wrong. Returns an fc_ctl_exit status.
 */
int fc_ctl_main(int argc, char **argv);

#endif
