/* metrics.h — process counters in Prometheus text format (GET /metrics).
 * Lock-free: relaxed atomic increments from every loop. */
#ifndef BX_HTTP_METRICS_H
#define BX_HTTP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "domain/errors.h"
#include "queue/waitroom.h"

enum metric_event { METRIC_HOLD, METRIC_PAYMENT, METRIC_CHARGE, METRIC__EVENTS };

/* route_index: index in the route table, or `nroutes` for unmatched paths. */
void metrics_observe_request(size_t route_index, int status, int64_t micros);
/* Outcome of a domain action: BX_OK, BX_REPLAY (an idempotent replay: answered,
 * nothing done) or the refusal. */
void metrics_observe_event(enum metric_event ev, bx_err outcome);

/* Renders everything (routes labelled by their templates) into a malloc'd
 * NUL-terminated string; the caller frees. The waiting room's figures are the
 * whole room's (in scale-out, the cluster's: every instance reports the same). */
char *metrics_render(const char *const *route_labels, size_t nroutes, struct waitroom *w);

#endif
