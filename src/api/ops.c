/* ops.c — operations endpoints: liveness, readiness (store and queue answer),
 * Prometheus metrics. */
#include "api/api.h"
#include "app.h"
#include "http/metrics.h"
#include "http/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ops_healthz(struct call *c)
{
    call_reply_json(c, 200, json_pack("{s:s}", "status", "ok"));
}

void ops_readyz(struct call *c)
{
    bx_err db = c->loop->store->ops->ping(c->loop->store);
    bx_err q = app.waitroom->ops->ping(app.waitroom);
    int ready = db == BX_OK && q == BX_OK && !app.stopping;
    call_reply_json(c, ready ? 200 : 503,
                    json_pack("{s:s, s:s, s:s}", "status", ready ? "ready" : "not ready", "db",
                              db == BX_OK ? "ok" : bx_err_info(db)->code, "queue",
                              q == BX_OK ? "ok" : bx_err_info(q)->code));
}

void ops_metrics(struct call *c)
{
    char *text = metrics_render(server_route_labels(), api_route_count, app.waitroom);
    if (text == NULL) {
        call_fail(c, BX_ERR_INTERNAL);
        return;
    }
    /* database-wide gauges: the same figure from every instance */
    int64_t holds = 0, sold = 0;
    char gauges[512] = "";
    if (c->loop->store->ops->counts(c->loop->store, c->now, &holds, &sold) == BX_OK)
        snprintf(gauges, sizeof gauges,
                 "# HELP boxoffice_holds_live Seats under a live hold (whole database).\n"
                 "# TYPE boxoffice_holds_live gauge\nboxoffice_holds_live %lld\n"
                 "# HELP boxoffice_seats_sold Seats sold (whole database).\n"
                 "# TYPE boxoffice_seats_sold gauge\nboxoffice_seats_sold %lld\n",
                 (long long)holds, (long long)sold);
    size_t tlen = strlen(text), glen = strlen(gauges);
    char *all = h2o_mem_alloc_pool(&c->req->pool, tlen + glen + 1);
    memcpy(all, text, tlen);
    memcpy(all + tlen, gauges, glen + 1);
    free(text);
    call_reply_text(c, 200, "text/plain; version=0.0.4", all, tlen + glen);
}
