/*
 * outcome_strategy: round-robin over the eligible backends that shows what
 * the host told it, in the responses, through the ABI 1.2 additions: each
 * pick adds
 *   X-Picked: I                   the backend picked
 *   X-Pick-TLS: 0|1               fc_pick_args.flags & FC_PICK_TLS
 *   X-Outcomes: I:S,I:S,...       every outcome() told so far, oldest first
 *                                 (the last 32), "-" before the first
 * and, when the request has a header `X-Bad-Header`, tries to add a header
 * whose value holds a CR LF and reports what response_header_add() returned
 * in `X-Bad-Rc: N`. One instance per worker: the tests run one worker.
 */
#include <fulcrum/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEPT 32

struct outcome_strategy {
    const struct fc_host *host;
    const struct fc_pool_view *pool;
    uint32_t next;
    struct {
        uint32_t index;
        int status;
    } told[KEPT];
    uint32_t n_told; /* ever */
};

static int os_create(const struct fc_host *host, const struct fc_pool_view *pool, void **state)
{
    struct outcome_strategy *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return FC_ENOMEM;
    s->host = host;
    s->pool = pool;
    *state = s;
    return 0;
}

static void os_destroy(void *state)
{
    free(state);
}

static int os_pick(void *state, const struct fc_pick_args *args)
{
    struct outcome_strategy *s = state;
    const struct fc_host *h = s->host;
    uint32_t n = s->pool->n_backends;
    int picked = FC_ENOBACKEND;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t i = (s->next + k) % n;
        if (fc_backend_eligible(args, &s->pool->backends[i])) {
            s->next = (i + 1) % n;
            picked = (int)i;
            break;
        }
    }
    char v[KEPT * 16];
    snprintf(v, sizeof(v), "%d", picked);
    h->response_header_add(h, args->request, "X-Picked", v);
    h->response_header_add(h, args->request, "X-Pick-TLS", args->flags & FC_PICK_TLS ? "1" : "0");
    size_t o = 0;
    uint32_t first = s->n_told > KEPT ? s->n_told - KEPT : 0;
    v[0] = '\0';
    for (uint32_t i = first; i < s->n_told && o + 16 < sizeof(v); i++)
        o += (size_t)snprintf(v + o, sizeof(v) - o, "%s%u:%d", i > first ? "," : "",
                              s->told[i % KEPT].index, s->told[i % KEPT].status);
    h->response_header_add(h, args->request, "X-Outcomes", s->n_told ? v : "-");
    size_t len;
    if (h->request_header(h, args->request, "X-Bad-Header", &len) != NULL) {
        int rc = h->response_header_add(h, args->request, "X-Injected", "a\r\nSet-Cookie: x=1");
        snprintf(v, sizeof(v), "%d", rc);
        h->response_header_add(h, args->request, "X-Bad-Rc", v);
    }
    return picked;
}

static void os_outcome(void *state, uint32_t index, int status, uint64_t latency_us)
{
    struct outcome_strategy *s = state;
    s->told[s->n_told % KEPT].index = index;
    s->told[s->n_told % KEPT].status = status;
    s->n_told++;
}

static const struct fc_strategy_ops os_ops = {
    .size = sizeof(struct fc_strategy_ops),
    .create = os_create,
    .destroy = os_destroy,
    .pick = os_pick,
    .outcome = os_outcome,
};

FC_PLUGIN_DESCRIPTOR(.kind = FC_PLUGIN_STRATEGY, .name = "outcome_strategy", .version = "1.0.0",
                     .description = "round-robin that shows its outcomes in response headers",
                     .strategy = &os_ops);
