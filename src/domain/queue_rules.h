/* queue_rules.h — pure waiting-room arithmetic (CONTRACT §4): estimated wait, poll
 * interval, measured admission rate. No I/O, no locks; shared by every queue backend. */
#ifndef BX_DOMAIN_QUEUE_RULES_H
#define BX_DOMAIN_QUEUE_RULES_H

#include <stdint.h>

struct waitroom_config {
    int64_t active_max;      /* ACTIVE tokens per concert */
    double admit_rate;       /* admissions per second per concert; 0 = no limit */
    int64_t waiting_idle_ms; /* WAITING token without a poll this long → EXPIRED */
    int64_t active_idle_ms;  /* ACTIVE token without a request this long → EXPIRED */
    /* Redis: a poll of a WAITING token up to this position always asks Redis; deeper
     * ones may be answered from the instance's view (DESIGN). 0 means 64. */
    int64_t exact_poll_depth;
};

/* Estimated seconds until `position` is admitted. measured_rate is the moving
 * average of admissions per second; when nothing was measured yet (<= 0) the
 * estimate falls back to admit_rate, else to active_max slots turning over once
 * per active_idle. Never negative; saturates instead of overflowing. */
int64_t queue_eta_seconds(int64_t position, double measured_rate, const struct waitroom_config *cfg);

/* When the client should poll again: ACTIVE tokens only need to stay alive
 * (a third of active_idle, capped at 60 s); WAITING tokens poll sooner near the
 * head of the line, later far back (a quarter of the ETA), between 1 s and a third
 * of waiting_idle (so polling on time never loses a place), capped at 30 s. */
int64_t queue_poll_after_ms(int active, int64_t eta_seconds, const struct waitroom_config *cfg);

/* Moving average of admissions per second: folds `admitted` over `elapsed_ms`
 * into avg (exponential, ~10 s horizon) and returns the new average. *weight is
 * how much of the horizon has been measured (0 before anything, tending to 1): the
 * average covers only the time measured so far, so an on-sale's first second
 * reads as its real rate instead of a trickle blended with zero history. */
double queue_rate_update(double avg, double *weight, int64_t admitted, int64_t elapsed_ms);

/* How many tokens may be admitted now: free slots (active_max - active), further
 * limited by admit_rate through a token bucket of *budget admissions that
 * refills at admit_rate per second up to max(1, admit_rate). */
int64_t queue_admissible(int64_t active, const struct waitroom_config *cfg, double *budget, int64_t elapsed_ms);

#endif
