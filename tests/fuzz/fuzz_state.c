/*
 * libFuzzer target: the state file reader (fc_overlay_from_json()) on
 * arbitrary bytes. What it takes must write back (fc_overlay_to_json()) to
 * a file it takes again, with the same entries: a restart after a restart
 * restores what the first one did.
 */
#include "log.h"
#include "overlay.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void drop(void *arg, enum fc_log_level level, const char *line)
{
    (void)arg;
    (void)level;
    (void)line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fc_log_set_sink(drop, NULL);
    struct fc_overlay o;
    char err[256];
    if (fc_overlay_from_json((const char *)data, size, &o, err, sizeof(err)) != 0) {
        if (o.n != 0 || err[0] == '\0')
            abort(); /* refused without a reason, or with half of it kept */
        return 0;
    }
    char *text = fc_overlay_to_json(&o);
    if (text == NULL)
        abort();
    struct fc_overlay back;
    if (fc_overlay_from_json(text, strlen(text), &back, err, sizeof(err)) != 0 || back.n != o.n)
        abort();
    for (uint32_t i = 0; i < o.n; i++)
        if (strcmp(o.entries[i].pool, back.entries[i].pool) != 0 ||
            strcmp(o.entries[i].address, back.entries[i].address) != 0 ||
            o.entries[i].admin != back.entries[i].admin ||
            o.entries[i].weight != back.entries[i].weight ||
            o.entries[i].removed != back.entries[i].removed ||
            o.entries[i].runtime != back.entries[i].runtime)
            abort();
    free(text);
    fc_overlay_free(&back);
    fc_overlay_free(&o);
    return 0;
}
