/* ops.c — operations endpoints: liveness, readiness (store and queue answer),
 * Prometheus metrics. */
#include "api/api.h"
#include "app.h"
#include "http/metrics.h"
#include "http/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Liveness: answered by the loop itself, whatever the database or the queue do. */
void ops_healthz(struct call *c)
{
    call_reply_json(c, 200, json_pack("{s:s}", "status", "ok"));
}

/* Readiness asks the store and the queue at once and answers when both did. */
struct ready_state {
    bx_err db, queue;
    int waiting;
};

static void ready_answer(struct call *c, struct ready_state *st)
{
    int ready = st->db == BX_OK && st->queue == BX_OK && !app.stopping;
    call_reply_json(c, ready ? 200 : 503,
                    json_pack("{s:s, s:s, s:s}", "status", ready ? "ready" : "not ready", "db",
                              st->db == BX_OK ? "ok" : bx_err_info(st->db)->code, "queue",
                              st->queue == BX_OK ? "ok" : bx_err_info(st->queue)->code));
}

static void ready_db(void *arg, bx_err e)
{
    struct ready_state *st = arg;
    st->db = e;
    st->waiting--;
    struct call *c = call_resume(st);
    if (c != NULL && st->waiting == 0)
        ready_answer(c, st);
}

static void ready_queue(void *arg, bx_err e)
{
    struct ready_state *st = arg;
    st->queue = e;
    st->waiting--;
    struct call *c = call_resume(st);
    if (c != NULL && st->waiting == 0)
        ready_answer(c, st);
}

void ops_readyz(struct call *c)
{
    struct ready_state *st = call_state(c, sizeof *st, NULL);
    st->waiting = 2;
    call_step_begin(c);
    call_step_begin(c);
    astore_ping(c->loop->store, ready_db, st);
    waitroom_ping(c->loop->queue, ready_queue, st);
}

/* Database-wide gauges: the same figure from every instance. */
struct metrics_state {
    int64_t holds, sold;
};

static void metrics_counted(void *arg, bx_err e)
{
    struct metrics_state *st = arg;
    struct call *c = call_resume(st);
    if (c == NULL)
        return;
    char *text = metrics_render(server_route_labels(), api_route_count, app.waitroom);
    if (text == NULL) {
        call_fail(c, BX_ERR_INTERNAL);
        return;
    }
    char gauges[512] = "";
    if (e == BX_OK)
        snprintf(gauges, sizeof gauges,
                 "# HELP boxoffice_holds_live Seats under a live hold (whole database).\n"
                 "# TYPE boxoffice_holds_live gauge\nboxoffice_holds_live %lld\n"
                 "# HELP boxoffice_seats_sold Seats sold (whole database).\n"
                 "# TYPE boxoffice_seats_sold gauge\nboxoffice_seats_sold %lld\n",
                 (long long)st->holds, (long long)st->sold);
    size_t tlen = strlen(text), glen = strlen(gauges);
    char *all = h2o_mem_alloc_pool(&c->req->pool, tlen + glen + 1);
    memcpy(all, text, tlen);
    memcpy(all + tlen, gauges, glen + 1);
    free(text);
    call_reply_text(c, 200, "text/plain; version=0.0.4", all, tlen + glen);
}

void ops_metrics(struct call *c)
{
    struct metrics_state *st = call_state(c, sizeof *st, NULL);
    call_step_begin(c);
    astore_counts(c->loop->store, c->now, &st->holds, &st->sold, metrics_counted, st);
}
