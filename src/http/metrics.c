/* metrics.c — see metrics.h. Fixed arrays sized at compile time: no allocation on
 * the request path. */
#include "http/metrics.h"
#include "domain/queue_rules.h"
#include "util/clock.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 64
static const int status_codes[] = {200, 201, 204, 400, 401, 402, 403, 404, 405, 409, 410, 413, 415, 422, 429, 500, 503};
#define NSTATUS (sizeof status_codes / sizeof status_codes[0])
static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

static uint64_t req_count[MAX_ROUTES + 1][NSTATUS + 1];
static uint64_t req_bucket[MAX_ROUTES + 1][NBUCKETS + 1];
static uint64_t req_sum_us[MAX_ROUTES + 1];
static uint64_t events[METRIC__EVENTS][BX_ERR__COUNT];

static size_t status_slot(int status)
{
    for (size_t i = 0; i < NSTATUS; i++)
        if (status_codes[i] == status)
            return i;
    return NSTATUS;
}

void metrics_observe_request(size_t route_index, int status, int64_t micros)
{
    if (route_index > MAX_ROUTES)
        route_index = MAX_ROUTES;
    __atomic_fetch_add(&req_count[route_index][status_slot(status)], 1, __ATOMIC_RELAXED);
    size_t b = 0;
    while (b < NBUCKETS && (double)micros / 1e6 > buckets[b])
        b++;
    __atomic_fetch_add(&req_bucket[route_index][b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&req_sum_us[route_index], (uint64_t)(micros > 0 ? micros : 0), __ATOMIC_RELAXED);
}

void metrics_observe_event(enum metric_event ev, bx_err outcome)
{
    if ((unsigned)ev < METRIC__EVENTS && (unsigned)outcome < BX_ERR__COUNT)
        __atomic_fetch_add(&events[ev][outcome], 1, __ATOMIC_RELAXED);
}

struct buf {
    char *p;
    size_t len, cap;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->p != NULL && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 16384;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL)
            return;
        b->p = np;
        b->cap = cap;
    }
}

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* The admission rate as exported. The waiting room keeps a concert's last
 * measurement while nobody waits and nobody is admitted (the next arrival's ETA
 * starts from it), so as a gauge it froze at its last value for as long as the
 * concert stayed idle (9.2/s for minutes after the last admission). A concert a
 * scrape finds with the same admitted_total as the scrape before and nobody
 * waiting is decayed here as the room's moving average would be with no
 * admissions (queue_rate_update, 10 s time constant), from the last scrape that
 * saw it move: the gauge reaches 0.000 about 100 s after the last admission.
 * While somebody waits the room measures the rate itself and it is exported as is. */
#define RATE_SEEN_MAX 256
static struct rate_seen {
    int64_t concert_id;
    int64_t admitted_total;
    int64_t moved_ms; /* monotonic ms of the last scrape that saw it move */
} rate_seen[RATE_SEEN_MAX];
static size_t nrate_seen;
static pthread_mutex_t rate_lock = PTHREAD_MUTEX_INITIALIZER;

static double exported_rate(const struct waitroom_concert_stats *st, int64_t now_ms)
{
    pthread_mutex_lock(&rate_lock);
    struct rate_seen *r = NULL;
    for (size_t i = 0; i < nrate_seen && r == NULL; i++)
        if (rate_seen[i].concert_id == st->concert_id)
            r = &rate_seen[i];
    if (r == NULL) {
        if (nrate_seen < RATE_SEEN_MAX) {
            r = &rate_seen[nrate_seen++];
        } else { /* forget the concert that has been still the longest */
            r = &rate_seen[0];
            for (size_t i = 1; i < nrate_seen; i++)
                if (rate_seen[i].moved_ms < r->moved_ms)
                    r = &rate_seen[i];
        }
        *r = (struct rate_seen){.concert_id = st->concert_id, .admitted_total = st->admitted_total, .moved_ms = now_ms};
    } else if (r->admitted_total != st->admitted_total || st->waiting > 0) {
        r->admitted_total = st->admitted_total;
        r->moved_ms = now_ms;
    }
    int64_t still_ms = now_ms - r->moved_ms;
    pthread_mutex_unlock(&rate_lock);
    double weight = 1; /* a full history: plain exponential decay */
    return still_ms > 0 ? queue_rate_update(st->admit_rate_avg, &weight, 0, still_ms) : st->admit_rate_avg;
}

char *metrics_render(const char *const *route_labels, size_t nroutes, struct waitroom *w)
{
    struct buf b = {0};
    if (nroutes > MAX_ROUTES)
        nroutes = MAX_ROUTES;
    put(&b, "# HELP boxoffice_http_requests_total HTTP requests by route template and status.\n"
            "# TYPE boxoffice_http_requests_total counter\n");
    for (size_t r = 0; r <= nroutes; r++) {
        const char *label = r < nroutes ? route_labels[r] : "unmatched";
        size_t ri = r < nroutes ? r : MAX_ROUTES;
        for (size_t s = 0; s <= NSTATUS; s++) {
            uint64_t v = load(&req_count[ri][s]);
            if (v == 0)
                continue;
            if (s < NSTATUS)
                put(&b, "boxoffice_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", label, status_codes[s],
                    (unsigned long long)v);
            else
                put(&b, "boxoffice_http_requests_total{route=\"%s\",status=\"other\"} %llu\n", label,
                    (unsigned long long)v);
        }
    }
    put(&b, "# HELP boxoffice_http_request_duration_seconds Time from request to response, by route template.\n"
            "# TYPE boxoffice_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r <= nroutes; r++) {
        const char *label = r < nroutes ? route_labels[r] : "unmatched";
        size_t ri = r < nroutes ? r : MAX_ROUTES;
        uint64_t cum = 0;
        for (size_t k = 0; k <= NBUCKETS; k++)
            cum += load(&req_bucket[ri][k]);
        if (cum == 0)
            continue;
        cum = 0;
        for (size_t k = 0; k < NBUCKETS; k++) {
            cum += load(&req_bucket[ri][k]);
            put(&b, "boxoffice_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n", label, buckets[k],
                (unsigned long long)cum);
        }
        cum += load(&req_bucket[ri][NBUCKETS]);
        put(&b, "boxoffice_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n", label,
            (unsigned long long)cum);
        put(&b, "boxoffice_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", label,
            (double)load(&req_sum_us[ri]) / 1e6);
        put(&b, "boxoffice_http_request_duration_seconds_count{route=\"%s\"} %llu\n", label, (unsigned long long)cum);
    }
    static const char *const event_names[METRIC__EVENTS] = {"holds", "payments", "charges"};
    for (int ev = 0; ev < METRIC__EVENTS; ev++) {
        put(&b,
            "# HELP boxoffice_%s_total Outcomes of %s requests in this process (OK, REPLAY for an idempotent "
            "replay, or the refusal code).\n"
            "# TYPE boxoffice_%s_total counter\n",
            event_names[ev], event_names[ev], event_names[ev]);
        for (int e = 0; e < BX_ERR__COUNT; e++) {
            uint64_t v = load(&events[ev][e]);
            if (v != 0 || e == BX_OK)
                put(&b, "boxoffice_%s_total{outcome=\"%s\"} %llu\n", event_names[ev],
                    e == BX_REPLAY ? "REPLAY" : bx_err_info((bx_err)e)->code, (unsigned long long)v);
        }
    }
    put(&b,
        "# HELP boxoffice_seats_sold_total Seats sold by this process (replayed payments are not sales).\n"
        "# TYPE boxoffice_seats_sold_total counter\n"
        "boxoffice_seats_sold_total %llu\n",
        (unsigned long long)load(&events[METRIC_PAYMENT][BX_OK]));
    if (w != NULL) {
        struct waitroom_concert_stats st[256];
        size_t n = 0;
        if (w->ops->stats(w, st, 256, &n) == BX_OK) {
            /* whole-room figures: in scale-out every instance reports the cluster's
             * (dashboards aggregate them with max, not sum: docs/DEPLOY.md) */
            put(&b, "# HELP boxoffice_queue_waiting WAITING queue tokens per concert (whole waiting room).\n"
                    "# TYPE boxoffice_queue_waiting gauge\n");
            for (size_t i = 0; i < n; i++)
                put(&b, "boxoffice_queue_waiting{concert=\"%lld\"} %lld\n", (long long)st[i].concert_id,
                    (long long)st[i].waiting);
            put(&b, "# HELP boxoffice_queue_active ACTIVE queue tokens per concert (whole waiting room).\n"
                    "# TYPE boxoffice_queue_active gauge\n");
            for (size_t i = 0; i < n; i++)
                put(&b, "boxoffice_queue_active{concert=\"%lld\"} %lld\n", (long long)st[i].concert_id,
                    (long long)st[i].active);
            put(&b, "# HELP boxoffice_queue_admitted_total Tokens admitted per concert (whole waiting room).\n"
                    "# TYPE boxoffice_queue_admitted_total counter\n");
            for (size_t i = 0; i < n; i++)
                put(&b, "boxoffice_queue_admitted_total{concert=\"%lld\"} %lld\n", (long long)st[i].concert_id,
                    (long long)st[i].admitted_total);
            put(&b, "# HELP boxoffice_queue_admission_rate Measured admissions per second per concert (moving "
                    "average, 10 s; whole waiting room).\n"
                    "# TYPE boxoffice_queue_admission_rate gauge\n");
            int64_t now_ms = clock_mono_ms();
            for (size_t i = 0; i < n; i++)
                put(&b, "boxoffice_queue_admission_rate{concert=\"%lld\"} %.3f\n", (long long)st[i].concert_id,
                    exported_rate(&st[i], now_ms));
        }
    }
    return b.p;
}
