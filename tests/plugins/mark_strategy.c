/*
 * mark_strategy: round-robin over the eligible backends, like round_robin,
 * that leaves a trace of its life in a file, so that a test can see when the
 * host creates and destroys its instances (and so when a generation that used
 * it was released).
 *
 * Keys: `mark_file` (required), the path of the file to append to, copied at
 * create(); `label` (default "mark"), the word that names the instance in the
 * file. create() appends "created LABEL\n" and destroy() "destroyed LABEL\n",
 * each with one write() on a descriptor opened with O_APPEND, so the lines of
 * instances destroyed one after the other never mix. The host creates one
 * instance per worker thread, so a generation leaves `workers` lines of each.
 */
#include <fulcrum/plugin.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct mark_strategy {
    const struct fc_pool_view *pool;
    uint32_t next; /* where the next scan starts */
    char *mark_file;
    char *label;
};

/* Appends "WHAT LABEL\n" to the mark file; a failure is only logged (when a host is at hand). */
static int append_mark(const struct mark_strategy *m, const char *what)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "%s %s\n", what, m->label);
    if (n < 0 || (size_t)n >= sizeof(line))
        return FC_EINVAL;
    int fd = open(m->mark_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return FC_ERROR;
    ssize_t w = write(fd, line, (size_t)n);
    close(fd);
    return w == n ? 0 : FC_ERROR;
}

static void mark_free(struct mark_strategy *m)
{
    free(m->mark_file);
    free(m->label);
    free(m);
}

static int mark_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    const char *file = NULL, *label = "mark";
    if (host->config_string(host, "mark_file", &file) != 0 || file == NULL) {
        host->config_error(host, "mark_file", "required: the file to append marks to");
        return FC_EINVAL;
    }
    int rc = host->config_string(host, "label", &label);
    if (rc != 0 && rc != FC_ENOENT)
        return rc;

    struct mark_strategy *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return FC_ENOMEM;
    /* Copied, so that destroy() relies on nothing of the host's. */
    m->mark_file = strdup(file);
    m->label = strdup(label);
    if (m->mark_file == NULL || m->label == NULL) {
        mark_free(m);
        return FC_ENOMEM;
    }
    m->pool = pool;
    if (append_mark(m, "created") != 0) {
        host->log(host, FC_LOG_ERROR, "cannot append to %s", m->mark_file);
        mark_free(m);
        return FC_ERROR;
    }
    *state = m;
    return 0;
}

static void mark_destroy(void *state)
{
    struct mark_strategy *m = state;
    append_mark(m, "destroyed"); /* nobody to tell if it fails: the test sees the line missing */
    mark_free(m);
}

static int mark_pick(void *state, const struct fc_pick_args *args)
{
    struct mark_strategy *m = state;
    uint32_t n = m->pool->n_backends;
    uint32_t i = m->next < n ? m->next : 0;
    for (uint32_t scanned = 0; scanned < n; scanned++) {
        if (fc_backend_eligible(args, &m->pool->backends[i])) {
            m->next = i + 1 < n ? i + 1 : 0;
            return (int)i;
        }
        i = i + 1 < n ? i + 1 : 0;
    }
    return FC_ENOBACKEND;
}

static const struct fc_strategy_ops mark_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = mark_create,
    .destroy = mark_destroy,
    .pick = mark_pick,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "mark_strategy", .version = "0.0.1",
                     .description = "test: round-robin that marks create and destroy in a file",
                     .strategy = &mark_ops);
