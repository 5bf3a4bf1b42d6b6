/*
 * libFuzzer target: the configuration loader on arbitrary file contents. The
 * input is written to a file of its own (per process) and loaded with
 * fc_config_load(), whose errors go to a sink that drops them; what loads is
 * freed. @include targets are checked by the loader itself before libconfig
 * reads them (see config.c).
 */
#include "config.h"
#include "log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char path[64];

static void drop(void *arg, enum fc_log_level level, const char *line)
{
}

static void remove_file(void)
{
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (path[0] == '\0') {
        snprintf(path, sizeof(path), "/tmp/fulcrum-fuzz-%d.conf", (int)getpid());
        fc_log_set_sink(drop, NULL);
        atexit(remove_file);
    }
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    struct fc_config *cfg = NULL;
    if (fc_config_load(path, &cfg) == 0)
        fc_config_free(cfg);
    return 0;
}
