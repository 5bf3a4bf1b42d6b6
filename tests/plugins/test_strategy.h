/*
 * The private state of the test_strategy plugin. The plugin itself never
 * shares it; the host tests read it through fc_instance.state to see what the
 * configuration getters returned.
 */
#ifndef FC_TEST_STRATEGY_H
#define FC_TEST_STRATEGY_H

#include <stdint.h>

struct test_strategy_state {
    int64_t answer;    /* "answer", default 7 */
    const char *label; /* "label", default "none" */
    double ratio;      /* "ratio", default 1.0 */
    int flag;          /* "flag", default 0 */
    /* What each getter returned. */
    int rc_answer, rc_label, rc_ratio, rc_flag;
};

#endif
