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

/* How fast a concert's line moves, as the estimate projects it (DESIGN "Waiting
 * room", the serving counter). */
struct queue_pace {
    double rate;   /* moving average of promotions per second (queue_pace_update); <= 0: nothing measured */
    int64_t at_ms; /* when the line last moved (a promotion) or formed: the projection's origin; 0: now */
};

/* Estimated seconds until `position` is admitted, at now_ms: the serving counter.
 * With I = 1 / pace->rate (or, before anything was measured, 1 / admit_rate, else
 * active_idle / active_max), the p-th in line is expected at pace->at_ms + p * I.
 * It counts down until only half an interval is left for the head of the line and
 * holds there (a stall: the next one may go any moment or take a while, and the
 * others follow at I): max(at + p * I - now, (p - 1/2) * I), in whole seconds
 * rounded up, at least 1. A user who only waits sees it fall or hold between
 * promotions, and fall at one as long as the pace holds; neighbours differ by at
 * most I, and position p + 1 is never told more than 3 times position p's. Position
 * <= 0 gives 0; it saturates at INT64_MAX (also when no configuration can ever
 * admit anybody) and is never negative. */
int64_t queue_eta_seconds(int64_t position, const struct queue_pace *pace, int64_t now_ms,
                          const struct waitroom_config *cfg);

/* The pace's moving average, folded at promotions only (so it does not decay while
 * the line stalls: a stall shows in the sample that ends it): `promoted` tokens left
 * the line over the elapsed_ms since the line last moved or formed. As
 * queue_rate_update (10 s horizon, weight-corrected), except that a history with no
 * weight starts from the configured rate (admit_rate, else active_max per
 * active_idle) counted as one second measured: a first sample over a few
 * milliseconds moves the estimate only part of the way. elapsed_ms <= 0 measures
 * nothing (the caller keeps the promotions for the next fold). */
double queue_pace_update(double rate, double *weight, int64_t promoted, int64_t elapsed_ms,
                         const struct waitroom_config *cfg);

/* When the client should poll again: ACTIVE tokens only need to stay alive
 * (a third of active_idle, capped at 60 s); WAITING tokens poll sooner near the
 * head of the line, later far back (a quarter of the ETA), between 1 s and a third
 * of waiting_idle (so polling on time never loses a place), capped at 30 s. */
int64_t queue_poll_after_ms(int active, int64_t eta_seconds, const struct waitroom_config *cfg);

/* A WAITING token's poll interval: queue_poll_after_ms of its estimate once the
 * line's pace was measured; before that the estimate is the configured worst case,
 * so the shortest interval (an on-sale's first crowd, told to come back in 30 s,
 * would learn of its admission that late). */
int64_t queue_waiting_poll_after_ms(int64_t eta_seconds, const struct queue_pace *pace,
                                    const struct waitroom_config *cfg);

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
