/* queue_rules.c — the waiting room's arithmetic (CONTRACT §4, DESIGN "Waiting room"):
 * estimated wait, poll interval, measured admission rate, admission budget.
 * Pure functions: no I/O, no locks, no state; every result saturates instead of
 * overflowing and is never negative. */
#include "domain/queue_rules.h"

#include <math.h>
#include <stdbool.h>

#define RATE_HORIZON_MS 10000.0 /* time constant of the admission-rate moving average */
#define PACE_PRIOR_MS 1000.0    /* how much measuring the configured rate counts for */
#define ACTIVE_POLL_CAP_MS 60000
#define WAITING_POLL_CAP_MS 30000
#define WAITING_POLL_MIN_MS 1000

/* The configured admissions per second, for before anything was measured:
 * admit_rate, else active_max slots turning over once per active_idle; 0 when no
 * configuration can admit anybody. */
static double configured_rate(const struct waitroom_config *cfg)
{
    if (cfg->admit_rate > 0 && isfinite(cfg->admit_rate))
        return cfg->admit_rate;
    if (cfg->active_max > 0 && cfg->active_idle_ms > 0)
        return (double)cfg->active_max * 1000.0 / (double)cfg->active_idle_ms;
    return 0;
}

/* See queue_rules.h. A NaN, infinite or non-positive pace rate counts as "nothing
 * measured"; an origin in the future (another instance's clock) counts as now. */
int64_t queue_eta_seconds(int64_t position, const struct queue_pace *pace, int64_t now_ms,
                          const struct waitroom_config *cfg)
{
    if (position <= 0)
        return 0;
    double rate = pace->rate > 0 && isfinite(pace->rate) ? pace->rate : configured_rate(cfg);
    if (!(rate > 0))
        return INT64_MAX;
    double interval = 1000.0 / rate; /* ms per promotion */
    double since = pace->at_ms > 0 && now_ms > pace->at_ms ? (double)now_ms - (double)pace->at_ms : 0;
    double due = (double)position * interval - since;
    double rest = ((double)position - 0.5) * interval; /* the hold once half an interval is left */
    if (!(due >= rest))
        due = rest;
    double s = ceil(due / 1000.0);
    if (!(s < 9.2e18)) /* also catches NaN and +inf */
        return INT64_MAX;
    return s < 1 ? 1 : (int64_t)s;
}

/* See queue_rules.h. When a third of waiting_idle is under 1 s the upper bound wins:
 * keeping the place matters more than shedding polls. Always >= 1 ms. */
int64_t queue_poll_after_ms(int active, int64_t eta_seconds, const struct waitroom_config *cfg)
{
    int64_t v;
    if (active) {
        v = cfg->active_idle_ms / 3;
        if (v > ACTIVE_POLL_CAP_MS)
            v = ACTIVE_POLL_CAP_MS;
        return v < 1 ? 1 : v;
    }
    int64_t hi = cfg->waiting_idle_ms / 3;
    if (hi > WAITING_POLL_CAP_MS)
        hi = WAITING_POLL_CAP_MS;
    if (eta_seconds <= 0)
        v = 0;
    else if (eta_seconds > INT64_MAX / 250)
        v = INT64_MAX;
    else
        v = eta_seconds * 250; /* a quarter of the ETA, in ms */
    if (v < WAITING_POLL_MIN_MS)
        v = WAITING_POLL_MIN_MS;
    if (v > hi)
        v = hi;
    return v < 1 ? 1 : v;
}

/* See queue_rules.h. */
int64_t queue_waiting_poll_after_ms(int64_t eta_seconds, const struct queue_pace *pace,
                                    const struct waitroom_config *cfg)
{
    bool measured = pace->rate > 0 && isfinite(pace->rate);
    return queue_poll_after_ms(0, measured ? eta_seconds : 0, cfg);
}

/* See queue_rules.h. An exponential average with weight alpha = 1 - e^(-elapsed/10 s)
 * for the new sample (so it does not depend on how often it is updated), corrected
 * for its missing history: with w the measured share of the horizon, the estimate
 * is the plain average divided by w, which folds the sample in with alpha / w'.
 * elapsed_ms <= 0 measures nothing (avg returned unchanged); a negative, NaN or
 * infinite avg or weight restarts from no history. */
double queue_rate_update(double avg, double *weight, int64_t admitted, int64_t elapsed_ms)
{
    double w = *weight;
    if (!(avg >= 0) || !isfinite(avg) || !(w >= 0 && w <= 1))
        avg = 0, w = 0;
    *weight = w;
    if (elapsed_ms <= 0)
        return avg;
    if (admitted < 0)
        admitted = 0;
    double sample = (double)admitted * 1000.0 / (double)elapsed_ms;
    double alpha = 1.0 - exp(-(double)elapsed_ms / RATE_HORIZON_MS);
    double nw = w + alpha * (1.0 - w);
    double r = nw > 0 ? avg + alpha / nw * (sample - avg) : avg;
    *weight = nw <= 1 ? nw : 1;
    return (r >= 0 && isfinite(r)) ? r : 0;
}

/* See queue_rules.h. The prior's weight is what queue_rate_update gives one
 * second measured from nothing; without a configured rate there is no prior. */
double queue_pace_update(double rate, double *weight, int64_t promoted, int64_t elapsed_ms,
                         const struct waitroom_config *cfg)
{
    double w = *weight;
    if (!(w > 0 && w <= 1) || !(rate >= 0) || !isfinite(rate)) {
        rate = configured_rate(cfg);
        w = rate > 0 ? 1.0 - exp(-PACE_PRIOR_MS / RATE_HORIZON_MS) : 0;
    }
    *weight = w;
    return queue_rate_update(rate, weight, promoted, elapsed_ms);
}

/* See queue_rules.h. Refills *budget for elapsed_ms (<= 0: no refill) and returns
 * min(free slots, whole admissions in the budget). It does not consume the budget:
 * the caller subtracts 1 from *budget per admission it makes. admit_rate <= 0 (or
 * NaN) means no rate limit, and *budget is left alone. */
int64_t queue_admissible(int64_t active, const struct waitroom_config *cfg, double *budget, int64_t elapsed_ms)
{
    int64_t free_slots;
    if (active < 0)
        active = 0;
    if (__builtin_sub_overflow(cfg->active_max, active, &free_slots))
        free_slots = INT64_MAX;
    if (free_slots <= 0)
        free_slots = 0;
    if (!(cfg->admit_rate > 0))
        return free_slots;
    double cap = cfg->admit_rate > 1 ? cfg->admit_rate : 1;
    double b = *budget;
    if (!(b >= 0)) /* negative or NaN */
        b = 0;
    if (elapsed_ms > 0)
        b += cfg->admit_rate * (double)elapsed_ms / 1000.0;
    if (!(b <= cap))
        b = cap;
    *budget = b;
    double whole = floor(b);
    if (whole >= (double)free_slots)
        return free_slots;
    return (int64_t)whole;
}
