/* ops.c — operations endpoints: liveness, readiness (store and queue answer),
 * Prometheus metrics. */
#include "api/api.h"
#include "app.h"
#include "http/metrics.h"
#include "http/server.h"

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
    call_reply_text(c, 200, "text/plain; version=0.0.4", text, strlen(text));
    free(text);
}
