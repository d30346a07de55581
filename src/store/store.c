/* store.c — picks the storage backend from the --db URL. */
#include "store/store.h"

#include <stdio.h>
#include <string.h>

struct store *store_open(const char *url, int flags, char *err, size_t errlen)
{
    if (strncmp(url, "sqlite:", 7) == 0)
        return store_sqlite_open(url + 7, flags, err, errlen);
    if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0)
        return store_pg_open(url, flags, err, errlen);
    snprintf(err, errlen, "--db must be sqlite:<path> or postgresql://..., got \"%s\"", url);
    return NULL;
}

void store_write_idem(const struct store_write *w, struct idem *idem)
{
    idem->key = w->has_key ? w->key : NULL;
    memcpy(idem->request_hash, w->request_hash, sizeof idem->request_hash);
}

void store_write_set_idem(struct store_write *w, const struct idem *idem)
{
    w->has_key = idem->key != NULL;
    if (w->has_key)
        snprintf(w->key, sizeof w->key, "%s", idem->key);
    memcpy(w->request_hash, idem->request_hash, sizeof w->request_hash);
}

/* A payment's outcome also says how many live holds the user keeps on the
 * concert (whether paying ends the queue visit); read in the same transaction
 * when the caller batches. */
static void run_pay(struct store *s, struct store_write *w)
{
    struct idem idem;
    store_write_idem(w, &idem);
    w->result = s->ops->pay(s, w->user_id, w->reservation_id, w->amount, w->now, &idem, &w->payment);
    w->live_holds_left = 0;
    if (w->result == BX_OK && s->ops->live_holds_on_concert(s, w->user_id, w->concert_id, w->now,
                                                            &w->live_holds_left) != BX_OK)
        w->live_holds_left = 1; /* unknown: keep the queue token rather than end a visit that still needs it */
}

void store_write_run(struct store *s, struct store_write *w)
{
    struct idem idem;
    switch (w->kind) {
    case STORE_WRITE_HOLD:
        w->result = s->ops->hold_seat(s, w->user_id, w->schedule_id, w->seat_no, w->now, w->hold_ms,
                                      w->max_per_user, &w->reservation);
        return;
    case STORE_WRITE_CANCEL:
        w->result = s->ops->reservation_cancel(s, w->user_id, w->reservation_id, w->now);
        return;
    case STORE_WRITE_CHARGE:
        store_write_idem(w, &idem);
        w->result = s->ops->balance_charge(s, w->user_id, w->amount, w->now, &idem, &w->balance);
        return;
    case STORE_WRITE_PAY:
        run_pay(s, w);
        return;
    }
    w->result = BX_ERR_INTERNAL;
}
