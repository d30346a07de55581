/* waitroom_mem.c — the embedded waiting room (CONTRACT §4, DESIGN "Waiting room"): one
 * FIFO queue per concert held in this process, every status change written through
 * to a dedicated store connection. Must not do arithmetic of its own (ETA, polling,
 * rate, budget come from domain/queue_rules.c) nor speak HTTP.
 *
 * Layout, chosen so a million waiting users cost about 51 bytes each:
 *  - every token lives in one arena (`struct tok`, 40 bytes) addressed by 32-bit
 *    ids; the token's text names its slot (util/token.h), so a token is found
 *    without a table keyed by token: the slot's token, rebuilt from its issue time
 *    and random bytes, is compared in constant time; a slot is reused once its
 *    token's expiry is durable and the wheel (below) went past it; user id and
 *    issue time take 32 bits each (the rare token
 *    whose values do not fit keeps them in a side array, struct wide);
 *  - an open-addressing hash table of ids finds a token by (user, concert);
 *  - each concert keeps a window of its sequence numbers: ids[] maps a sequence
 *    offset to the id of a WAITING token (NONE otherwise), a bitmap marks the same,
 *    and a Fenwick tree over blocks of 64 offsets counts WAITING tokens, so a
 *    position is a prefix sum plus a popcount (O(log n)); `head` is the oldest
 *    offset that may still be WAITING, so admission is O(1) amortised; the window
 *    is compacted past head and grows by doubling;
 *  - ACTIVE tokens leave the window for a small per-concert table (<= active_max),
 *    whose entries also link them in one list ordered by last_seen (idle expiry
 *    O(1) per touch, O(expired) per tick);
 *  - WAITING tokens sit in a wheel of time buckets through one link: a poll only
 *    refreshes last_seen, and the tick moves a polled token to its bucket when it
 *    reaches the old one, so expiry stays exact to the millisecond.
 * All of it is guarded by one mutex (struct wm.mu).
 *
 * Persistence is write-behind: a status change appends its record to a journal
 * under mu and changes memory at once; one journal thread writes what piled up in
 * ONE store transaction, outside mu, so issuing never waits on the disk under the
 * lock. Whoever must not answer before the change is durable (a new token, a leave)
 * waits for it (when_durable); the answer comes back to the asking loop through
 * its port. An expired token stays in memory, EXPIRED, until its record is
 * durable: until then the store still holds it as live.
 *
 * Every operation is done in memory at once, so the asynchronous ops of
 * waitroom.h call done before they return, except issue and leave, whose done
 * runs when the journal has made the change durable. */
#include "queue/waitroom.h"
#include "util/mix64.h"
#include "util/token.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NONE UINT32_MAX
#define REL_MAX (NONE - 2)   /* sequence offsets per concert */
#define ID_MAX (NONE - 1)    /* tokens in the arena */
#define CONCERT_MAX (1u << 28)
#define WHEEL_SLOTS 1024 /* time buckets of the WAITING wheel */
#define WIN_MIN 64 /* offsets; the window is always whole blocks of 64 */
#define HASH_MIN 64
#define EXPIRE_BATCH 4096    /* expiries per list per tick, so one tick never holds mu for long */
#define JOURNAL_RETRY_MS 100 /* pause after a failed journal write before trying again */

enum { ST_FREE = 0, ST_WAITING = 1, ST_ACTIVE = 2, ST_EXPIRED = 3 };
/* Bits of tok.cs beside the status: linked in the wheel through `next`; user id
 * and issue time kept in w->wide[tok.user] (struct wide). */
enum { CS_IN_WHEEL = 4, CS_WIDE = 8, CS_FLAGS = CS_IN_WHEEL | CS_WIDE };

/* One token, 40 bytes. `cs` packs the concert index (<< 4), the CS_ flags and the
 * status. `user` is the user id and `issued` the token's issue time in ms since
 * w->ibase (the time its text carries), unless CS_WIDE: then either did not fit
 * in 32 bits and `user` indexes w->wide. last_seen is ms since w->epoch, kept
 * exact. `next` links the token in a bucket of the WAITING wheel, or a FREE slot in
 * the arena's free list. An EXPIRED token stays for good without a store (unit
 * tests); with a store it is dropped once its expiry is durable, and then looked
 * up there. */
struct tok {
    uint32_t user;
    uint32_t issued;
    uint32_t last_seen;
    uint32_t next;
    uint32_t cs;
    uint32_t aux;                          /* WAITING: seq offset; ACTIVE: index in its concert's act[] */
    uint8_t rnd[TOKEN_QUEUE_RANDOM_BYTES]; /* the token's random bytes (token.h) */
};
_Static_assert(sizeof(struct tok) == 40, "struct tok is 40 bytes");

/* A token whose user id or issue time does not fit struct tok's 32 bits: user ids
 * of 2^32 and above, and tokens issued 2^31 ms (~25 days) or more before the room
 * opened or before the last move of ibase. Owned by struct wm, one per CS_WIDE
 * token. */
struct wide {
    int64_t user_id;
    int64_t issued_ms;
    uint32_t id;
};

/* An ACTIVE token's extra fields, and its links (token ids) in the room's list of
 * ACTIVE tokens ordered by last_seen. */
struct act {
    int64_t activated_at;
    uint32_t id;
    uint32_t rel;
    uint32_t prev, next;
};

/* WAITING tokens by last_seen, in buckets of `width` ms: bucket B holds times
 * [base + B * width, base + (B + 1) * width). Every token linked in the wheel is in
 * one bucket of [cur, cur + WHEEL_SLOTS), slot B % WHEEL_SLOTS, and was put there
 * with a last_seen of that bucket or a later one (a poll refreshes last_seen, not
 * the bucket), so a WAITING token idle since `limit` is in a bucket <= the one of
 * `limit`. Tokens that stopped WAITING stay linked until the tick reaches their
 * bucket (expiry_run): a slot is reused only after that. */
struct wheel {
    uint32_t head[WHEEL_SLOTS], tail[WHEEL_SLOTS];
    int64_t base, width, cur;
    uint32_t count; /* tokens linked */
};

/* One concert's queue; owned by struct wm. seq = origin + rel. The window covers
 * rel in [win_lo, next_rel); n = next_rel - win_lo <= cap, cap a multiple of 64.
 * Invariants: every WAITING token's rel is in [head, next_rel) and
 * ids[rel - win_lo] is its id; bit i of bits[] is (ids[i] != NONE) for i < n and 0
 * from n to the end of its word; fen[1..nb] is the Fenwick tree of the blocks'
 * counts (popcount of bits[b]), nb = the ceil(n / 64) blocks in use. */
struct cq {
    int64_t concert_id;
    int64_t origin;
    uint32_t next_rel, win_lo, head, cap;
    uint32_t *ids;
    uint64_t *bits; /* cap / 64 words */
    uint32_t *fen;  /* cap / 64 + 1 entries, 1-based */
    struct act *act;
    uint32_t nact, act_cap;
    int64_t waiting, admitted_total, admitted_since;
    double rate_avg, rate_weight, budget;
    int64_t refill_at, rate_at;
    /* The line's pace (queue_eta_seconds): pace.at_ms is the last promotion (or
     * when the line formed), pace_n promotions not yet folded (same millisecond). */
    struct queue_pace pace;
    double pace_weight;
    int64_t pace_n;
};

/* Open addressing with linear probing over ids (NONE = empty), load <= 3/4, grown
 * by 1.5x (any size: a hash maps to its home slot by multiply-shift, not a mask);
 * deletion by backward shift, so no tombstones. The key lives in the entry. */
struct htab {
    uint32_t *slot;
    uint32_t size;
    uint32_t used;
};
enum hkind { H_USER, H_CONCERT };

/* Told that the changes it waited for are durable (e == BX_OK), or that writing
 * them failed for now (they are retried). Runs on the journal thread. */
typedef void (*durable_fn)(void *arg, bx_err e);

/* Someone waiting for every change up to seq to be durable. */
struct jwaiter {
    struct jwaiter *next;
    uint64_t seq;
    durable_fn fn;
    void *arg;
};

/* The write-behind journal (guarded by mu): records not yet handed to the journal
 * thread, and ids of EXPIRED tokens to free once their record is durable. */
struct journal {
    struct queue_record *rec;
    size_t n, cap;
    uint32_t *drop;
    size_t ndrop, drop_cap;
    uint64_t seq;     /* changes journaled so far */
    uint64_t durable; /* changes known durable */
    struct jwaiter *head, *tail;
    pthread_cond_t wake;
    pthread_t thread;
    bool running, stop;
};

/* The waiting room. Everything below `mu` is guarded by it, except persist, which
 * `pmu` guards (the journal thread writes through it without mu). Owns persist.
 * Lock order: mu, then pmu. */
struct wm {
    struct waitroom base;
    pthread_mutex_t mu;
    pthread_mutex_t pmu;
    struct waitroom_config cfg;
    struct store *persist;
    struct journal j;
    struct tok *tok;
    uint32_t ntok, tok_cap, free_head;
    int64_t epoch; /* of every last_seen: see seen_set */
    int64_t ibase; /* of every tok.issued: see issued_rebase */
    struct wide *wide;
    uint32_t nwide, wide_cap;
    struct htab by_user, by_concert;
    struct cq **cq;
    uint32_t ncq, cq_cap;
    uint32_t act_head, act_tail; /* ACTIVE tokens, oldest last_seen first (struct act links) */
    struct wheel wheel;
};

/* ---- small helpers (caller holds mu) ---- */

static inline int tok_status(const struct tok *t) { return (int)(t->cs & 3u); }
static inline uint32_t tok_concert(const struct tok *t) { return t->cs >> 4; }
static inline bool tok_in_wheel(const struct tok *t) { return (t->cs & CS_IN_WHEEL) != 0; }
static inline void tok_set(struct tok *t, uint32_t ci, int st)
{
    t->cs = ci << 4 | (t->cs & CS_FLAGS) | (uint32_t)st;
}

static int64_t tok_user(const struct wm *w, const struct tok *t)
{
    return (t->cs & CS_WIDE) ? w->wide[t->user].user_id : (int64_t)t->user;
}

static int64_t tok_issued(const struct wm *w, const struct tok *t)
{
    return (t->cs & CS_WIDE) ? w->wide[t->user].issued_ms : w->ibase + t->issued;
}

/* Room for element n in an array with a 32-bit capacity (doubling from 16, at
 * most 2^31 elements). 0 on success; -1 when out of memory (nothing changed). */
static int grow_u32(void **arr, uint32_t *cap, uint32_t n, size_t size)
{
    if (n < *cap)
        return 0;
    if (*cap >= (1u << 30))
        return -1;
    uint32_t c = *cap ? *cap * 2 : 16;
    void *a = realloc(*arr, (size_t)c * size);
    if (a == NULL)
        return -1;
    *arr = a;
    *cap = c;
    return 0;
}

/* Sets a new token's user and issue time, in a struct wide when either does not
 * fit (CS_WIDE). -1 when out of memory (nothing changed). */
static int tok_fill(struct wm *w, uint32_t id, int64_t user_id, int64_t issued_ms)
{
    struct tok *t = &w->tok[id];
    int64_t d;
    if (user_id >= 0 && user_id <= UINT32_MAX && !__builtin_sub_overflow(issued_ms, w->ibase, &d) && d >= 0 &&
        d <= UINT32_MAX) {
        t->user = (uint32_t)user_id;
        t->issued = (uint32_t)d;
        return 0;
    }
    if (grow_u32((void **)&w->wide, &w->wide_cap, w->nwide, sizeof *w->wide) != 0)
        return -1;
    w->wide[w->nwide] = (struct wide){.user_id = user_id, .issued_ms = issued_ms, .id = id};
    t->user = w->nwide++;
    t->cs |= CS_WIDE;
    return 0;
}

/* Drops a CS_WIDE token's struct wide (the last one takes its place). */
static void tok_unwide(struct wm *w, uint32_t id)
{
    struct tok *t = &w->tok[id];
    uint32_t i = t->user;
    w->wide[i] = w->wide[--w->nwide];
    if (i < w->nwide)
        w->tok[w->wide[i].id].user = i;
    t->cs &= ~(uint32_t)CS_WIDE;
    t->user = 0;
}

static uint64_t hash_user(int64_t user_id, int64_t concert_id)
{
    return mix64((uint64_t)user_id * MIX64_GOLDEN ^ mix64((uint64_t)concert_id));
}

static uint64_t id_hash(const struct wm *w, enum hkind k, uint32_t id)
{
    switch (k) {
    case H_USER:
        return hash_user(tok_user(w, &w->tok[id]), w->cq[tok_concert(&w->tok[id])]->concert_id);
    default:
        return mix64((uint64_t)w->cq[id]->concert_id);
    }
}

/* The home slot of a 64-bit hash: its high 32 bits scaled to [0, size). */
static inline uint32_t htab_home(const struct htab *h, uint64_t hash)
{
    return (uint32_t)((hash >> 32) * h->size >> 32);
}

static inline uint32_t htab_next(const struct htab *h, uint32_t i) { return i + 1 == h->size ? 0 : i + 1; }

static int htab_init(struct htab *h)
{
    h->slot = malloc(HASH_MIN * sizeof *h->slot);
    if (h->slot == NULL)
        return -1;
    memset(h->slot, 0xff, HASH_MIN * sizeof *h->slot);
    h->size = HASH_MIN;
    h->used = 0;
    return 0;
}

static void htab_put(const struct wm *w, enum hkind k, struct htab *h, uint32_t id)
{
    uint32_t i = htab_home(h, id_hash(w, k, id));
    while (h->slot[i] != NONE)
        i = htab_next(h, i);
    h->slot[i] = id;
    h->used++;
}

/* Makes room for `extra` more keys without exceeding load 3/4; -1 if out of memory
 * (the table is then unchanged). */
static int htab_reserve(const struct wm *w, enum hkind k, struct htab *h, uint32_t extra)
{
    uint64_t size = h->size;
    if ((uint64_t)h->used + extra <= size / 4 * 3)
        return 0;
    uint64_t grown = size + size / 2;
    if (grown > UINT32_MAX)
        return -1;
    uint32_t *old = h->slot, old_size = h->size;
    uint32_t *fresh = malloc(grown * sizeof *fresh);
    if (fresh == NULL)
        return -1;
    memset(fresh, 0xff, grown * sizeof *fresh);
    h->slot = fresh;
    h->size = (uint32_t)grown;
    h->used = 0;
    for (uint32_t i = 0; i < old_size; i++)
        if (old[i] != NONE)
            htab_put(w, k, h, old[i]);
    free(old);
    return 0;
}

/* Removes id, which must be present. */
static void htab_del(const struct wm *w, enum hkind k, struct htab *h, uint32_t id)
{
    uint32_t i = htab_home(h, id_hash(w, k, id));
    while (h->slot[i] != id)
        i = htab_next(h, i);
    h->slot[i] = NONE;
    h->used--;
    for (uint32_t j = htab_next(h, i); h->slot[j] != NONE; j = htab_next(h, j)) {
        uint32_t home = htab_home(h, id_hash(w, k, h->slot[j]));
        /* the entry at j may move to the hole at i unless its home lies in (i, j] */
        int stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            h->slot[i] = h->slot[j];
            h->slot[j] = NONE;
            i = j;
        }
    }
}

/* The token whose decoded bytes are raw: the slot they name, if it holds a token
 * with the same time and random bytes (compared in constant time, both always). */
static uint32_t find_token(const struct wm *w, const uint8_t *raw)
{
    uint32_t id = token_queue_slot(raw);
    if (id >= w->ntok || tok_status(&w->tok[id]) == ST_FREE)
        return NONE;
    const struct tok *t = &w->tok[id];
    uint8_t mine[TOKEN_QUEUE_RAW];
    token_queue_make_from(tok_issued(w, t), id, t->rnd, mine);
    int differ = sodium_memcmp(mine, raw, TOKEN_QUEUE_RAW);
    return differ == 0 ? id : NONE;
}

static uint32_t find_user(const struct wm *w, int64_t user_id, uint32_t ci)
{
    const struct htab *h = &w->by_user;
    uint32_t i = htab_home(h, hash_user(user_id, w->cq[ci]->concert_id));
    for (; h->slot[i] != NONE; i = htab_next(h, i)) {
        const struct tok *t = &w->tok[h->slot[i]];
        if (tok_concert(t) == ci && tok_user(w, t) == user_id)
            return h->slot[i];
    }
    return NONE;
}

static uint32_t find_concert(const struct wm *w, int64_t concert_id)
{
    const struct htab *h = &w->by_concert;
    for (uint32_t i = htab_home(h, mix64((uint64_t)concert_id)); h->slot[i] != NONE; i = htab_next(h, i))
        if (w->cq[h->slot[i]]->concert_id == concert_id)
            return h->slot[i];
    return NONE;
}

/* ---- arena ---- */

/* Makes the arena hold at least `need` slots (need <= ID_MAX); -1 when out of memory. */
static int arena_reserve(struct wm *w, uint64_t need)
{
    if (need <= w->tok_cap)
        return 0;
    uint64_t cap = w->tok_cap ? (uint64_t)w->tok_cap * 2 : 1024;
    if (cap < need)
        cap = need;
    if (cap > ID_MAX)
        cap = ID_MAX;
    struct tok *t = realloc(w->tok, cap * sizeof *t);
    if (t == NULL)
        return -1;
    w->tok = t;
    w->tok_cap = (uint32_t)cap;
    return 0;
}

/* Takes a slot for a new token (contents undefined but cs, 0: FREE, in no list);
 * NONE when out of memory. */
static uint32_t tok_take(struct wm *w)
{
    uint32_t id = w->free_head;
    if (id != NONE)
        w->free_head = w->tok[id].next;
    else if (w->ntok >= ID_MAX || arena_reserve(w, (uint64_t)w->ntok + 1) != 0)
        return NONE;
    else
        id = w->ntok++;
    w->tok[id].cs = 0;
    return id;
}

/* Start-up only, before free_list_rebuild: takes slot id, the one a loaded token's
 * text names. Slots passed over on the way stay FREE, on no list. 0, or -1 when out
 * of memory, or 1 when another token holds the slot. */
static int tok_take_at(struct wm *w, uint32_t id)
{
    if (id >= ID_MAX)
        return 1;
    if (id < w->ntok)
        return tok_status(&w->tok[id]) == ST_FREE ? 0 : 1;
    if (arena_reserve(w, (uint64_t)id + 1) != 0)
        return -1;
    memset(&w->tok[w->ntok], 0, (size_t)(id + 1 - w->ntok) * sizeof *w->tok);
    w->ntok = id + 1;
    return 0;
}

/* Start-up only, after the load: every FREE slot goes on the free list, lowest first. */
static void free_list_rebuild(struct wm *w)
{
    w->free_head = NONE;
    for (uint32_t id = w->ntok; id-- > 0;)
        if (tok_status(&w->tok[id]) == ST_FREE) {
            w->tok[id].next = w->free_head;
            w->free_head = id;
        }
}

/* Frees a token's slot. One still linked in the wheel stays there, FREE, until
 * the tick reaches its bucket and puts it on the free list (expiry_visit). */
static void tok_give_back(struct wm *w, uint32_t id)
{
    struct tok *t = &w->tok[id];
    if (t->cs & CS_WIDE)
        tok_unwide(w, id);
    bool linked = tok_in_wheel(t);
    uint32_t next = t->next;
    memset(t, 0, sizeof *t);
    if (linked) {
        t->cs = CS_IN_WHEEL;
        t->next = next;
    } else {
        t->next = w->free_head;
        w->free_head = id;
    }
}

/* last_seen is 32 bits of ms since w->epoch, exact. The epoch starts SEEN_BACK
 * (~24.8 days) before the room opened (clocks of other threads, or of tests, may
 * lag). Once a time comes within 2^30 ms (~12.4 days) of the end of the 2^32 ms
 * range, the epoch moves to SEEN_BACK before it and every last_seen back as much:
 * O(tokens), at most once in ~12 days. A time before the epoch reads as the epoch
 * (older than any idle limit could matter for: an idle token expires either way). */
#define SEEN_BACK (1ll << 31)
#define SEEN_END ((int64_t)UINT32_MAX - (1ll << 30))

static void seen_rebase(struct wm *w, int64_t now)
{
    int64_t epoch = now - SEEN_BACK, shift;
    if (__builtin_sub_overflow(epoch, w->epoch, &shift) || shift > (int64_t)UINT32_MAX)
        shift = UINT32_MAX;
    w->epoch = epoch;
    for (uint32_t id = 0; id < w->ntok; id++) {
        struct tok *t = &w->tok[id];
        t->last_seen = t->last_seen > (uint64_t)shift ? t->last_seen - (uint32_t)shift : 0;
    }
}

static void seen_set(struct wm *w, uint32_t id, int64_t now)
{
    int64_t d;
    if (__builtin_sub_overflow(now, w->epoch, &d))
        d = now < w->epoch ? 0 : INT64_MAX;
    if (d >= SEEN_END) {
        seen_rebase(w, now);
        d = SEEN_BACK;
    }
    w->tok[id].last_seen = d > 0 ? (uint32_t)d : 0;
}

static int64_t seen_get(const struct wm *w, uint32_t id) { return w->epoch + w->tok[id].last_seen; }

/* ---- liveness: ACTIVE tokens in a list, WAITING tokens in a wheel ---- */

static struct act *act_of(const struct wm *w, uint32_t id)
{
    return &w->cq[tok_concert(&w->tok[id])]->act[w->tok[id].aux];
}

/* Appends an ACTIVE token (its act entry filled) at the young end of the list. */
static void act_list_append(struct wm *w, uint32_t id)
{
    struct act *a = act_of(w, id);
    a->prev = w->act_tail;
    a->next = NONE;
    if (a->prev == NONE)
        w->act_head = id;
    else
        act_of(w, a->prev)->next = id;
    w->act_tail = id;
}

static void act_list_unlink(struct wm *w, uint32_t id)
{
    struct act *a = act_of(w, id);
    if (a->prev == NONE)
        w->act_head = a->next;
    else
        act_of(w, a->prev)->next = a->next;
    if (a->next == NONE)
        w->act_tail = a->prev;
    else
        act_of(w, a->next)->prev = a->prev;
    a->prev = a->next = NONE;
}

/* The bucket of time t (floor division; saturating). */
static int64_t wheel_bucket(const struct wheel *h, int64_t t)
{
    int64_t d;
    if (__builtin_sub_overflow(t, h->base, &d))
        return t < h->base ? INT64_MIN / 2 : INT64_MAX / 2;
    return d >= 0 ? d / h->width : -((-d + h->width - 1) / h->width);
}

/* Links token id (not linked) in the bucket of time t, kept within the wheel. */
static void wheel_add(struct wm *w, uint32_t id, int64_t t)
{
    struct wheel *h = &w->wheel;
    int64_t b = wheel_bucket(h, t);
    if (b < h->cur)
        b = h->cur; /* a lagging clock: its expiry may come up to one bucket late */
    if (b > h->cur + WHEEL_SLOTS - 1)
        b = h->cur + WHEEL_SLOTS - 1; /* visited early, then put further */
    uint32_t s = (uint32_t)(b % WHEEL_SLOTS);
    struct tok *tk = &w->tok[id];
    tk->next = NONE;
    tk->cs |= CS_IN_WHEEL;
    if (h->tail[s] == NONE)
        h->head[s] = id;
    else
        w->tok[h->tail[s]].next = id;
    h->tail[s] = id;
    h->count++;
}

/* Refreshes a live token's last_seen: an ACTIVE one moves to the young end of its
 * list; a WAITING one stays in its bucket (the tick moves it when it gets there).
 * Calls from several threads may carry slightly unordered `now`s; the order is
 * then off by those few ms, which only delays an expiry by as much. */
static void touch(struct wm *w, uint32_t id, int64_t now)
{
    seen_set(w, id, now);
    if (tok_status(&w->tok[id]) == ST_ACTIVE && w->act_tail != id) {
        act_list_unlink(w, id);
        act_list_append(w, id);
    }
}

/* ---- per-concert window: liveness bits, and a Fenwick tree over blocks of 64 ---- */

#define BLOCK 64

static uint32_t lowbit(uint32_t i) { return i & (0u - i); }

static uint32_t blocks_in_use(const struct cq *c) { return (c->next_rel - c->win_lo + BLOCK - 1) / BLOCK; }

/* Live offsets in blocks 1..b (1-based). */
static uint32_t fen_prefix(const struct cq *c, uint32_t b)
{
    uint32_t s = 0;
    for (; b > 0; b -= lowbit(b))
        s += c->fen[b];
    return s;
}

/* Adds d (mod 2^32, so -1 works) to block b (1-based, in use). */
static void fen_add(struct cq *c, uint32_t b, uint32_t d)
{
    uint32_t nb = blocks_in_use(c);
    for (; b <= nb; b += lowbit(b))
        c->fen[b] += d;
}

/* Rebuilds fen[1..nb] from bits in O(nb). */
static void fen_rebuild(struct cq *c)
{
    uint32_t nb = blocks_in_use(c);
    for (uint32_t b = 1; b <= nb; b++)
        c->fen[b] = (uint32_t)__builtin_popcountll(c->bits[b - 1]);
    for (uint32_t b = 1; b <= nb; b++) {
        uint32_t up = b + lowbit(b);
        if (up <= nb)
            c->fen[up] += c->fen[b];
    }
}

/* Live offsets in [0, i] (i < n): a WAITING token's position. O(log n). */
static uint32_t window_rank(const struct cq *c, uint32_t i)
{
    uint32_t r = i % BLOCK;
    uint64_t below = r == BLOCK - 1 ? UINT64_MAX : (2ull << r) - 1;
    return fen_prefix(c, i / BLOCK) + (uint32_t)__builtin_popcountll(c->bits[i / BLOCK] & below);
}

/* Offset i (< n, live) is WAITING no more. O(log n). */
static void window_clear(struct cq *c, uint32_t i)
{
    c->ids[i] = NONE;
    c->bits[i / BLOCK] &= ~(1ull << (i % BLOCK));
    fen_add(c, i / BLOCK + 1, (uint32_t)-1);
}

static void head_advance(struct cq *c)
{
    while (c->head < c->next_rel && c->ids[c->head - c->win_lo] == NONE)
        c->head++;
}

/* Reallocates ids, bits and fen to newcap offsets (a multiple of 64 that holds the
 * n in use). On failure cap keeps describing memory that is really there: -1. */
static int window_resize(struct cq *c, uint32_t newcap)
{
    bool grow = newcap > c->cap;
    uint32_t *ids = realloc(c->ids, (size_t)newcap * sizeof *ids);
    if (ids != NULL)
        c->ids = ids;
    uint64_t *bits = realloc(c->bits, (size_t)newcap / BLOCK * sizeof *bits);
    if (bits != NULL)
        c->bits = bits;
    uint32_t *fen = realloc(c->fen, ((size_t)newcap / BLOCK + 1) * sizeof *fen);
    if (fen != NULL)
        c->fen = fen;
    if (grow && (ids == NULL || bits == NULL || fen == NULL))
        return -1; /* some grew, some did not: cap stays */
    c->cap = newcap;
    return 0;
}

/* Guarantees room for one more offset in the window: compacts it past head (whole
 * blocks) when at least half is dead, else doubles it; shrinks it when mostly
 * empty. O(cap), so amortised O(1) per offset. -1 when out of memory or offsets
 * (window unchanged in meaning either way). */
static int window_room(struct cq *c)
{
    if (c->next_rel - c->win_lo < c->cap)
        return 0;
    head_advance(c);
    uint32_t dead = (c->head - c->win_lo) / BLOCK * BLOCK, live = c->next_rel - c->win_lo - dead, newcap = c->cap;
    if (dead < c->cap / 2)
        newcap = c->cap <= REL_MAX / 2 ? c->cap * 2 : c->cap;
    else if (live < c->cap / 4 && c->cap / 2 >= WIN_MIN)
        newcap = c->cap / 2;
    if (dead > 0) {
        memmove(c->ids, c->ids + dead, (size_t)live * sizeof *c->ids);
        memmove(c->bits, c->bits + dead / BLOCK, (size_t)(live + BLOCK - 1) / BLOCK * sizeof *c->bits);
        c->win_lo += dead;
    }
    if (newcap != c->cap)
        (void)window_resize(c, newcap); /* on failure compaction may still have made room */
    fen_rebuild(c);
    return c->next_rel - c->win_lo < c->cap ? 0 : -1;
}

/* Appends offset next_rel holding id (NONE for a non-WAITING offset) in O(log n);
 * window_room() must have succeeded. A new block's Fenwick node b covers blocks
 * (b - lowbit(b), b]: its value is its own count plus the sum of the others. */
static void window_push(struct cq *c, uint32_t id)
{
    uint32_t i = c->next_rel - c->win_lo, b = i / BLOCK + 1;
    uint64_t bit = id != NONE ? 1ull << (i % BLOCK) : 0;
    c->ids[i] = id;
    c->next_rel++;
    if (i % BLOCK == 0) {
        c->bits[b - 1] = bit;
        c->fen[b] = (bit != 0) + fen_prefix(c, b - 1) - fen_prefix(c, b - lowbit(b));
    } else if (bit != 0) {
        c->bits[b - 1] |= bit;
        fen_add(c, b, 1);
    }
}

/* Moves next_rel up to `rel` (only while loading, where offsets may skip). */
static int window_skip_to(struct cq *c, uint32_t rel)
{
    head_advance(c);
    if (c->head == c->next_rel) { /* nobody WAITING in the window: restart it at rel */
        c->win_lo = c->head = c->next_rel = rel;
        return 0;
    }
    while (c->next_rel < rel) {
        if (window_room(c) != 0)
            return -1;
        window_push(c, NONE);
    }
    return 0;
}

/* Once nobody waits, the window restarts empty at next_rel and gives memory back. */
static void window_reset_if_empty(struct cq *c)
{
    if (c->waiting != 0 || c->win_lo == c->next_rel)
        return;
    c->win_lo = c->head = c->next_rel;
    if (c->cap > WIN_MIN)
        (void)window_resize(c, WIN_MIN);
}

static int act_reserve(struct cq *c)
{
    return grow_u32((void **)&c->act, &c->act_cap, c->nact, sizeof *c->act);
}

static void act_remove(struct wm *w, struct cq *c, uint32_t idx)
{
    c->act[idx] = c->act[--c->nact];
    if (idx < c->nact)
        w->tok[c->act[idx].id].aux = idx;
}

/* The queue of concert_id, created empty on first use with sequence numbers starting
 * at origin. NONE when out of memory. */
static uint32_t concert_get(struct wm *w, int64_t concert_id, int64_t origin, int64_t now)
{
    uint32_t ci = find_concert(w, concert_id);
    if (ci != NONE)
        return ci;
    if (w->ncq >= CONCERT_MAX || htab_reserve(w, H_CONCERT, &w->by_concert, 1) != 0)
        return NONE;
    if (w->ncq == w->cq_cap) {
        uint32_t cap = w->cq_cap ? w->cq_cap * 2 : 8;
        struct cq **a = realloc(w->cq, (size_t)cap * sizeof *a);
        if (a == NULL)
            return NONE;
        w->cq = a;
        w->cq_cap = cap;
    }
    struct cq *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NONE;
    c->ids = malloc(WIN_MIN * sizeof *c->ids);
    c->bits = malloc(WIN_MIN / BLOCK * sizeof *c->bits);
    c->fen = malloc((WIN_MIN / BLOCK + 1) * sizeof *c->fen);
    if (c->ids == NULL || c->bits == NULL || c->fen == NULL) {
        free(c->ids);
        free(c->bits);
        free(c->fen);
        free(c);
        return NONE;
    }
    c->cap = WIN_MIN;
    c->concert_id = concert_id;
    c->origin = origin;
    c->budget = w->cfg.admit_rate > 1 ? w->cfg.admit_rate : 1; /* the bucket starts full */
    c->refill_at = c->rate_at = c->pace.at_ms = now;
    ci = w->ncq++;
    w->cq[ci] = c;
    htab_put(w, H_CONCERT, &w->by_concert, ci);
    return ci;
}

/* ---- records and tickets ---- */

/* The text of token id: its issue time, its slot, its random bytes. */
static void token_text(const struct wm *w, uint32_t id, char out[BX_QUEUE_TOKEN_LEN + 1])
{
    const struct tok *t = &w->tok[id];
    uint8_t raw[TOKEN_QUEUE_RAW];
    token_queue_make_from(tok_issued(w, t), id, t->rnd, raw);
    token_queue_encode(raw, out);
}

/* The persisted form of a live token as it is now. */
static void record_of(const struct wm *w, uint32_t id, struct queue_record *r)
{
    const struct tok *t = &w->tok[id];
    const struct cq *c = w->cq[tok_concert(t)];
    memset(r, 0, sizeof *r);
    token_text(w, id, r->token);
    r->user_id = tok_user(w, t);
    r->concert_id = c->concert_id;
    /* read from the token, kept nowhere else (8 bytes less per waiting user); only a
     * new token's record needs it: the store keeps a token's first issued_at, so
     * older random-prefixed tokens loaded from it are not hurt by the nonsense
     * this gives for them */
    r->issued_at = tok_issued(w, t);
    r->last_seen_at = seen_get(w, id);
    if (tok_status(t) == ST_ACTIVE) {
        r->status = QUEUE_ACTIVE;
        r->seq = c->origin + c->act[t->aux].rel;
        r->activated_at = c->act[t->aux].activated_at;
    } else {
        r->status = QUEUE_WAITING;
        r->seq = c->origin + t->aux;
    }
}

/* Grows an array of `size`-byte elements to hold n + 1. 0 on success. */
static int grow_for_one(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 256;
    void *a = realloc(*arr, c * size);
    if (a == NULL)
        return -1;
    *arr = a;
    *cap = c;
    return 0;
}

/* Persists r: journaled once the journal thread runs, written at once before
 * (start-up). A journaled change is durable later; see when_durable. */
static bx_err save(struct wm *w, const struct queue_record *r)
{
    if (w->persist == NULL)
        return BX_OK;
    if (!w->j.running)
        return w->persist->ops->queue_save(w->persist, r);
    if (grow_for_one((void **)&w->j.rec, &w->j.cap, w->j.n, sizeof *w->j.rec) != 0)
        return BX_ERR_INTERNAL;
    w->j.rec[w->j.n++] = *r;
    w->j.seq++;
    pthread_cond_signal(&w->j.wake);
    return BX_OK;
}

static void ticket_of(const struct wm *w, uint32_t id, int64_t now, struct queue_ticket *out)
{
    const struct tok *t = &w->tok[id];
    const struct cq *c = w->cq[tok_concert(t)];
    memset(out, 0, sizeof *out);
    token_text(w, id, out->token);
    out->user_id = tok_user(w, t);
    out->concert_id = c->concert_id;
    if (tok_status(t) == ST_ACTIVE) {
        out->status = QUEUE_ACTIVE;
        out->poll_after_ms = queue_poll_after_ms(1, 0, &w->cfg);
    } else {
        out->status = QUEUE_WAITING;
        out->position = window_rank(c, t->aux - c->win_lo);
        out->eta_seconds = queue_eta_seconds(out->position, &c->pace, now, &w->cfg);
        out->poll_after_ms = queue_waiting_poll_after_ms(out->eta_seconds, &c->pace, &w->cfg);
    }
}

/* ---- status changes (caller holds mu; each persists first, then changes memory) ---- */

/* Promotes the oldest WAITING token of c. BX_OK without doing anything when nobody
 * waits; on a store error nothing changed. */
static bx_err admit_one(struct wm *w, struct cq *c, int64_t now)
{
    head_advance(c);
    if (c->head == c->next_rel)
        return BX_OK;
    if (act_reserve(c) != 0)
        return BX_ERR_INTERNAL;
    uint32_t id = c->ids[c->head - c->win_lo];
    struct queue_record r;
    record_of(w, id, &r);
    r.status = QUEUE_ACTIVE;
    r.activated_at = now;
    r.last_seen_at = now;
    bx_err e = save(w, &r);
    if (e != BX_OK)
        return e;
    struct tok *t = &w->tok[id];
    window_clear(c, c->head - c->win_lo);
    c->head++;
    c->waiting--;
    c->act[c->nact] = (struct act){.activated_at = now, .id = id, .rel = t->aux};
    t->aux = c->nact++;
    tok_set(t, tok_concert(t), ST_ACTIVE); /* still linked in the wheel until the tick gets there */
    seen_set(w, id, now);
    act_list_append(w, id);
    c->admitted_total++;
    c->admitted_since++;
    return BX_OK;
}

static bx_err admit_some(struct wm *w, struct cq *c, int64_t now);

/* Admits the oldest WAITING tokens of c into free slots, within the admit_rate
 * budget (CONTRACT §4). Stops at the first store error and returns it. paced: the
 * admissions are the line moving, folded into c's pace (false for a token admitted
 * at its issue, which never waited). */
static bx_err admit_run(struct wm *w, struct cq *c, int64_t now, bool paced)
{
    int64_t before = c->admitted_total;
    bx_err e = admit_some(w, c, now);
    if (paced && c->admitted_total > before) {
        c->pace_n += c->admitted_total - before;
        if (now > c->pace.at_ms) {
            c->pace.rate = queue_pace_update(c->pace.rate, &c->pace_weight, c->pace_n, now - c->pace.at_ms, &w->cfg);
            c->pace_n = 0;
            c->pace.at_ms = now;
        }
    }
    return e;
}

/* admit_run's admissions. */
static bx_err admit_some(struct wm *w, struct cq *c, int64_t now)
{
    int64_t elapsed = now > c->refill_at ? now - c->refill_at : 0;
    if (now > c->refill_at)
        c->refill_at = now;
    int64_t n = queue_admissible((int64_t)c->nact, &w->cfg, &c->budget, elapsed);
    for (; n > 0 && c->waiting > 0; n--) {
        bx_err e = admit_one(w, c, now);
        if (e != BX_OK)
            return e;
        if (w->cfg.admit_rate > 0)
            c->budget -= 1;
    }
    return BX_OK;
}

/* A live token becomes EXPIRED (left, paid, idle): persisted with expires_at = now,
 * then its place or slot is freed and the user may issue anew. Without a store the
 * token stays known as EXPIRED; with one it is dropped once its record is durable
 * (the store remembers it). */
static bx_err expire(struct wm *w, uint32_t id, int64_t now)
{
    struct tok *t = &w->tok[id];
    struct cq *c = w->cq[tok_concert(t)];
    int st = tok_status(t);
    if (w->persist != NULL && grow_for_one((void **)&w->j.drop, &w->j.drop_cap, w->j.ndrop, sizeof *w->j.drop) != 0)
        return BX_ERR_INTERNAL;
    struct queue_record r;
    record_of(w, id, &r);
    r.status = QUEUE_EXPIRED;
    r.expires_at = now;
    bx_err e = save(w, &r);
    if (e != BX_OK)
        return e;
    if (st == ST_WAITING) {
        uint32_t i = t->aux - c->win_lo;
        window_clear(c, i);
        c->waiting--; /* still linked in the wheel until the tick gets there */
    } else {
        act_list_unlink(w, id);
        act_remove(w, c, t->aux);
    }
    htab_del(w, H_USER, &w->by_user, id);
    tok_set(t, tok_concert(t), ST_EXPIRED);
    if (w->persist != NULL)
        w->j.drop[w->j.ndrop++] = id; /* freed once the record above is durable */
    return BX_OK;
}

/* Resolves a client's token to a live token of user_id (CONTRACT §4, DESIGN errors):
 * malformed or unknown → QUEUE_TOKEN_INVALID; another user's → TOKEN_NOT_YOURS;
 * expired (here, or only in the store any more) → TOKEN_EXPIRED. */
static bx_err resolve(struct wm *w, const char *token, int64_t user_id, uint32_t *out)
{
    uint8_t raw[TOKEN_QUEUE_RAW];
    if (token == NULL || token_queue_decode(token, strnlen(token, BX_QUEUE_TOKEN_LEN + 1), raw) != 0)
        return BX_ERR_QUEUE_TOKEN_INVALID;
    uint32_t id = find_token(w, raw);
    if (id == NONE) {
        if (w->persist == NULL)
            return BX_ERR_QUEUE_TOKEN_INVALID;
        struct queue_record r;
        pthread_mutex_lock(&w->pmu);
        bx_err e = w->persist->ops->queue_find(w->persist, token, &r);
        pthread_mutex_unlock(&w->pmu);
        if (e == BX_ERR_NOT_FOUND)
            return BX_ERR_QUEUE_TOKEN_INVALID;
        if (e != BX_OK)
            return e;
        if (r.status != QUEUE_EXPIRED) /* live in the store but not here: not usable */
            return BX_ERR_QUEUE_TOKEN_INVALID;
        return r.user_id == user_id ? BX_ERR_TOKEN_EXPIRED : BX_ERR_TOKEN_NOT_YOURS;
    }
    const struct tok *t = &w->tok[id];
    if (tok_user(w, t) != user_id)
        return BX_ERR_TOKEN_NOT_YOURS;
    if (tok_status(t) == ST_EXPIRED)
        return BX_ERR_TOKEN_EXPIRED;
    *out = id;
    return BX_OK;
}

/* ---- the journal thread ---- */

/* Writes a batch in one store transaction (group commit when the store has it).
 * A record the store refuses is logged and dropped: retrying cannot help it. */
static bx_err journal_write(struct store *st, const struct queue_record *rec, size_t n)
{
    bool batched = st->ops->batch_begin != NULL && st->ops->batch_commit != NULL;
    if (batched) {
        bx_err e = st->ops->batch_begin(st);
        if (e != BX_OK)
            return e;
    }
    bx_err first = BX_OK;
    for (size_t i = 0; i < n; i++) {
        bx_err e = st->ops->queue_save(st, &rec[i]);
        if (e == BX_ERR_VALIDATION)
            fprintf(stderr, "waitroom: the store refused a queue record (token of user %lld)\n",
                    (long long)rec[i].user_id);
        else if (e != BX_OK && first == BX_OK)
            first = e;
    }
    if (batched) {
        bx_err e = st->ops->batch_commit(st);
        return e != BX_OK ? e : first;
    }
    return first;
}

/* Unlinks the waiters whose changes are all at or below seq. Under mu. */
static struct jwaiter *waiters_upto(struct journal *j, uint64_t seq)
{
    struct jwaiter *ready = j->head, **end = &ready;
    while (*end != NULL && (*end)->seq <= seq)
        end = &(*end)->next;
    j->head = *end;
    if (j->head == NULL)
        j->tail = NULL;
    *end = NULL;
    return ready;
}

static void waiters_call(struct jwaiter *list, bx_err e)
{
    while (list != NULL) {
        struct jwaiter *next = list->next;
        list->fn(list->arg, e);
        free(list);
        list = next;
    }
}

/* Takes what piled up, writes it outside mu, then frees the tokens it expired and
 * answers the waiters. A failed write is retried (same batch, in order) after a
 * pause; every waiter hears of the failure at once. At stop, drains first. */
static void *journal_main(void *arg)
{
    struct wm *w = arg;
    struct journal *j = &w->j;
    struct queue_record *batch = NULL;
    uint32_t *drops = NULL;
    size_t batch_cap = 0, drop_cap = 0;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (j->n == 0 && !j->stop)
            pthread_cond_wait(&j->wake, &w->mu);
        if (j->n == 0)
            break;
        /* swap buffers: the thread's old batch becomes the next journal */
        struct queue_record *rec = j->rec;
        size_t n = j->n, cap = j->cap;
        j->rec = batch, j->cap = batch_cap, j->n = 0;
        batch = rec, batch_cap = cap;
        uint32_t *dr = j->drop;
        size_t ndrop = j->ndrop, dcap = j->drop_cap;
        j->drop = drops, j->drop_cap = drop_cap, j->ndrop = 0;
        drops = dr, drop_cap = dcap;
        uint64_t upto = j->seq;
        for (;;) {
            pthread_mutex_unlock(&w->mu);
            pthread_mutex_lock(&w->pmu);
            bx_err e = journal_write(w->persist, batch, n);
            pthread_mutex_unlock(&w->pmu);
            pthread_mutex_lock(&w->mu);
            if (e == BX_OK) {
                j->durable = upto;
                for (size_t i = 0; i < ndrop; i++)
                    tok_give_back(w, drops[i]);
            }
            /* after a failure nothing later can be durable before the retry: tell everyone */
            struct jwaiter *ready = waiters_upto(j, e == BX_OK ? upto : UINT64_MAX);
            bool stop = j->stop;
            pthread_mutex_unlock(&w->mu);
            waiters_call(ready, e);
            if (e != BX_OK)
                fprintf(stderr, "waitroom: writing %zu queue changes failed: %s%s\n", n, bx_err_info(e)->message,
                        stop ? " (shutting down: given up)" : "; retrying");
            if (e != BX_OK && !stop)
                nanosleep(&(struct timespec){.tv_nsec = JOURNAL_RETRY_MS * 1000000L}, NULL);
            pthread_mutex_lock(&w->mu);
            if (e == BX_OK || stop)
                break;
        }
    }
    struct jwaiter *left = waiters_upto(j, UINT64_MAX);
    bx_err last = j->durable == j->seq ? BX_OK : BX_ERR_UNAVAILABLE;
    pthread_mutex_unlock(&w->mu);
    waiters_call(left, last); /* outside mu, as above */
    free(batch);
    free(drops);
    return NULL;
}

/* Stops the journal thread after it wrote everything. */
static void journal_stop(struct wm *w)
{
    if (!w->j.running)
        return;
    pthread_mutex_lock(&w->mu);
    w->j.stop = true;
    pthread_cond_signal(&w->j.wake);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->j.thread, NULL);
    w->j.running = false;
}

/* ---- the ops ---- */

static struct wm *wm_of(struct waitroom *w) { return (struct wm *)w; }

/* Frees everything and closes the store connection. No other thread may be inside. */
static void wm_close(struct waitroom *base)
{
    struct wm *w = wm_of(base);
    if (w == NULL)
        return;
    journal_stop(w);
    for (uint32_t i = 0; i < w->ncq; i++) {
        free(w->cq[i]->ids);
        free(w->cq[i]->bits);
        free(w->cq[i]->fen);
        free(w->cq[i]->act);
        free(w->cq[i]);
    }
    free(w->cq);
    free(w->tok);
    free(w->wide);
    free(w->by_user.slot);
    free(w->by_concert.slot);
    free(w->j.rec);
    free(w->j.drop);
    if (w->persist)
        w->persist->ops->close(w->persist);
    pthread_cond_destroy(&w->j.wake);
    pthread_mutex_destroy(&w->pmu);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* BX_OK when the store answers (always without a store). Under pmu. */
static bx_err mem_ping(struct waitroom *base)
{
    struct wm *w = wm_of(base);
    bx_err e = BX_OK;
    pthread_mutex_lock(&w->pmu);
    if (w->persist && w->persist->ops->ping)
        e = w->persist->ops->ping(w->persist);
    pthread_mutex_unlock(&w->pmu);
    return e;
}

/* Arranges for fn(arg, e) once every change made so far is durable and returns 1;
 * returns 0 when that is already so (fn is not called), -1 when out of memory.
 * Under mu. */
static int when_durable(struct waitroom *base, durable_fn fn, void *arg)
{
    struct wm *w = wm_of(base);
    int r = 0;
    pthread_mutex_lock(&w->mu);
    if (w->j.running && w->j.durable != w->j.seq) {
        struct jwaiter *x = malloc(sizeof *x);
        if (x == NULL) {
            r = -1;
        } else {
            *x = (struct jwaiter){.seq = w->j.seq, .fn = fn, .arg = arg};
            if (w->j.tail != NULL)
                w->j.tail->next = x;
            else
                w->j.head = x;
            w->j.tail = x;
            r = 1;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return r;
}

/* See waitroom.h. A new token is persisted WAITING before it exists here, then the
 * concert's admission runs (a failure there is left to the next tick, the token is
 * issued anyway). Under mu. */
static bx_err mem_issue(struct waitroom *base, int64_t user_id, int64_t concert_id, int64_t now,
                       struct queue_ticket *out, bool *created)
{
    struct wm *w = wm_of(base);
    bx_err e = BX_OK;
    pthread_mutex_lock(&w->mu);
    uint32_t ci = concert_get(w, concert_id, 1, now);
    if (ci == NONE) {
        e = BX_ERR_INTERNAL;
        goto out;
    }
    struct cq *c = w->cq[ci];
    uint32_t id = find_user(w, user_id, ci);
    if (id != NONE) {
        touch(w, id, now);
        ticket_of(w, id, now, out);
        *created = false;
        goto out;
    }
    if (c->next_rel >= REL_MAX) {
        e = BX_ERR_UNAVAILABLE;
        goto out;
    }
    if (window_room(c) != 0 || htab_reserve(w, H_USER, &w->by_user, 1) != 0 || (id = tok_take(w)) == NONE) {
        e = BX_ERR_INTERNAL;
        goto out;
    }
    struct tok *t = &w->tok[id];
    uint8_t raw[TOKEN_QUEUE_RAW];
    token_queue_make(now, id, raw);
    if (tok_fill(w, id, user_id, token_queue_issued_ms(raw)) != 0) {
        tok_give_back(w, id);
        e = BX_ERR_INTERNAL;
        goto out;
    }
    memcpy(t->rnd, raw + TOKEN_QUEUE_RANDOM_AT, sizeof t->rnd);
    seen_set(w, id, now);
    t->aux = c->next_rel;
    tok_set(t, ci, ST_WAITING);
    struct queue_record r;
    record_of(w, id, &r);
    e = save(w, &r);
    if (e != BX_OK) {
        tok_give_back(w, id);
        goto out;
    }
    window_push(c, id);
    c->waiting++;
    wheel_add(w, id, now);
    htab_put(w, H_USER, &w->by_user, id);
    /* Into an empty line only this token can be admitted: not the line moving; if
     * it waits, the line forms now, and the estimate projects from here. */
    bool line_was_empty = c->waiting == 1;
    (void)admit_run(w, c, now, !line_was_empty);
    if (line_was_empty && tok_status(t) == ST_WAITING && c->pace_n == 0 && now > c->pace.at_ms)
        c->pace.at_ms = now;
    ticket_of(w, id, now, out);
    *created = true;
out:
    pthread_mutex_unlock(&w->mu);
    return e;
}

/* See waitroom.h. Under mu; may read the store for a token no longer in memory. */
static bx_err mem_status(struct waitroom *base, const char *token, int64_t user_id, int64_t now,
                        struct queue_ticket *out)
{
    struct wm *w = wm_of(base);
    uint32_t id;
    pthread_mutex_lock(&w->mu);
    bx_err e = resolve(w, token, user_id, &id);
    if (e == BX_OK) {
        touch(w, id, now);
        ticket_of(w, id, now, out);
    }
    pthread_mutex_unlock(&w->mu);
    return e;
}

/* See waitroom.h. Only an ACTIVE token of that concert is refreshed. Under mu. */
static bx_err mem_require_active(struct waitroom *base, const char *token, int64_t user_id, int64_t concert_id,
                                int64_t now)
{
    struct wm *w = wm_of(base);
    uint32_t id;
    pthread_mutex_lock(&w->mu);
    bx_err e = resolve(w, token, user_id, &id);
    if (e == BX_OK) {
        const struct tok *t = &w->tok[id];
        if (tok_status(t) != ST_ACTIVE || w->cq[tok_concert(t)]->concert_id != concert_id)
            e = BX_ERR_QUEUE_NOT_ACTIVE;
        else
            touch(w, id, now);
    }
    pthread_mutex_unlock(&w->mu);
    return e;
}

/* leave (any live status) and complete (ACTIVE only): expire, then admit the next
 * in line; an admission failure is left to the next tick. Under mu. */
static bx_err end_token(struct waitroom *base, const char *token, int64_t user_id, int64_t now, bool active_only)
{
    struct wm *w = wm_of(base);
    uint32_t id;
    pthread_mutex_lock(&w->mu);
    bx_err e = resolve(w, token, user_id, &id);
    if (e == BX_OK && active_only && tok_status(&w->tok[id]) != ST_ACTIVE)
        e = BX_ERR_QUEUE_NOT_ACTIVE;
    if (e == BX_OK) {
        struct cq *c = w->cq[tok_concert(&w->tok[id])];
        e = expire(w, id, now);
        if (e == BX_OK)
            (void)admit_run(w, c, now, true);
    }
    pthread_mutex_unlock(&w->mu);
    return e;
}

static bx_err mem_leave(struct waitroom *base, const char *token, int64_t user_id, int64_t now)
{
    return end_token(base, token, user_id, now, false);
}

static bx_err mem_complete(struct waitroom *base, const char *token, int64_t user_id, int64_t now)
{
    return end_token(base, token, user_id, now, true);
}

/* The tick's visit of one token taken out of the wheel: a slot freed meanwhile goes
 * on the free list, a token no longer WAITING leaves the wheel, a WAITING one idle
 * since `limit` or before expires, any other goes to the bucket of its last_seen.
 * On a store error the token is linked again (in the bucket of its last_seen). */
static bx_err expiry_visit(struct wm *w, uint32_t id, int64_t limit, int64_t now, uint32_t *budget)
{
    struct tok *t = &w->tok[id];
    int st = tok_status(t);
    t->cs &= ~(uint32_t)CS_IN_WHEEL;
    w->wheel.count--;
    if (st == ST_FREE) {
        t->next = w->free_head;
        w->free_head = id;
        return BX_OK;
    }
    if (st != ST_WAITING)
        return BX_OK;
    int64_t seen = seen_get(w, id);
    if (seen > limit) {
        wheel_add(w, id, seen);
        return BX_OK;
    }
    bx_err e = expire(w, id, now);
    if (e != BX_OK) {
        wheel_add(w, id, seen);
        return e;
    }
    --*budget;
    return BX_OK;
}

/* Visits a chain of tokens taken out of the wheel (linked through `next`) until
 * the budget is spent or a store error; what is left goes back to bucket cur. */
static bx_err expiry_chain(struct wm *w, uint32_t id, uint32_t last, int64_t limit, int64_t now, uint32_t *budget)
{
    struct wheel *h = &w->wheel;
    bx_err e = BX_OK;
    while (id != NONE && *budget > 0 && e == BX_OK) {
        uint32_t next = id == last ? NONE : w->tok[id].next;
        e = expiry_visit(w, id, limit, now, budget);
        id = next;
    }
    if (id != NONE) { /* the rest, as it was, at the end of bucket cur */
        uint32_t s = (uint32_t)(h->cur % WHEEL_SLOTS); /* still counted in h->count */
        w->tok[last].next = NONE;
        if (h->tail[s] == NONE)
            h->head[s] = id;
        else
            w->tok[h->tail[s]].next = id;
        h->tail[s] = last;
    }
    return e;
}

/* Expires every WAITING token idle for waiting_idle, i.e. last seen at `limit` or
 * before; with a store at most EXPIRE_BATCH of them (the rest wait for the next
 * tick, so one tick never holds the lock for long). Visits the buckets from cur to
 * the one of limit, moving the tokens polled since they were put there; when that
 * is many buckets (a clock jump, or ticks far apart), every token once instead. */
static bx_err expire_idle_waiting(struct wm *w, int64_t now, uint32_t *budget)
{
    struct wheel *h = &w->wheel;
    int64_t limit;
    if (__builtin_sub_overflow(now, w->cfg.waiting_idle_ms, &limit))
        return BX_OK;
    int64_t target = wheel_bucket(h, limit);
    if (h->count == 0) {
        if (target > h->cur)
            h->cur = target;
        return BX_OK;
    }
    if (target - h->cur >= WHEEL_SLOTS / 4) {
        uint32_t first = NONE, last = NONE;
        for (uint32_t s = 0; s < WHEEL_SLOTS; s++) {
            if (h->head[s] == NONE)
                continue;
            if (first == NONE)
                first = h->head[s];
            else
                w->tok[last].next = h->head[s];
            last = h->tail[s];
            h->head[s] = h->tail[s] = NONE;
        }
        h->cur = target;
        return expiry_chain(w, first, last, limit, now, budget);
    }
    while (h->cur <= target) {
        uint32_t s = (uint32_t)(h->cur % WHEEL_SLOTS), first = h->head[s], last = h->tail[s];
        h->head[s] = h->tail[s] = NONE;
        bx_err e = expiry_chain(w, first, last, limit, now, budget);
        if (e != BX_OK || *budget == 0 || h->cur == target)
            return e; /* bucket target holds tokens seen after limit: visited again next tick */
        h->cur++;
    }
    return BX_OK;
}

/* Moves ibase (the origin of tok.issued) to SEEN_BACK before now once now comes
 * within 2^30 ms of the end of the 32-bit range from it (so every ~12 days), so
 * that new tokens keep fitting; tokens issued before the new ibase get a struct
 * wide. O(tokens). Counts them first: out of memory, nothing changes
 * (INTERNAL; tried again next tick, new tokens get a struct wide meanwhile). */
static bx_err issued_rebase(struct wm *w, int64_t now)
{
    int64_t d, base;
    if (__builtin_sub_overflow(now, w->ibase, &d) || d < SEEN_END || __builtin_sub_overflow(now, SEEN_BACK, &base))
        return BX_OK;
    int64_t shift = base - w->ibase;
    uint32_t need = 0;
    for (uint32_t id = 0; id < w->ntok; id++) {
        const struct tok *t = &w->tok[id];
        need += tok_status(t) != ST_FREE && !(t->cs & CS_WIDE) && (int64_t)t->issued < shift;
    }
    if ((uint64_t)w->nwide + need > w->wide_cap) {
        uint64_t cap = (uint64_t)w->nwide + need;
        struct wide *a = cap < (1u << 30) ? realloc(w->wide, cap * sizeof *a) : NULL;
        if (a == NULL)
            return BX_ERR_INTERNAL;
        w->wide = a;
        w->wide_cap = (uint32_t)cap;
    }
    for (uint32_t id = 0; id < w->ntok; id++) {
        struct tok *t = &w->tok[id];
        if (tok_status(t) == ST_FREE || (t->cs & CS_WIDE))
            continue;
        if ((int64_t)t->issued >= shift) {
            t->issued -= (uint32_t)shift;
            continue;
        }
        w->wide[w->nwide] = (struct wide){.user_id = t->user, .issued_ms = w->ibase + t->issued, .id = id};
        t->user = w->nwide++;
        t->cs |= CS_WIDE;
    }
    w->ibase = base;
    return BX_OK;
}

/* Expires the ACTIVE tokens idle for active_idle, oldest first, within the budget.
 * Stops at the first store error. */
static bx_err expire_idle_active(struct wm *w, int64_t now, uint32_t *budget)
{
    while (w->act_head != NONE && *budget > 0) {
        int64_t age;
        uint32_t id = w->act_head;
        if (__builtin_sub_overflow(now, seen_get(w, id), &age))
            age = INT64_MAX;
        if (age < w->cfg.active_idle_ms)
            break;
        bx_err e = expire(w, id, now);
        if (e != BX_OK)
            return e;
        --*budget;
    }
    return BX_OK;
}

/* See waitroom.h. Returns the first store error but still admits and measures every
 * concert. The rate is folded only while somebody waits or was admitted: an idle
 * concert keeps its last measurement. Under mu. */
static bx_err mem_tick(struct waitroom *base, int64_t now)
{
    struct wm *w = wm_of(base);
    pthread_mutex_lock(&w->mu);
    uint32_t wait_budget = w->persist ? EXPIRE_BATCH : UINT32_MAX, act_budget = wait_budget;
    bx_err e = issued_rebase(w, now);
    bx_err e3 = expire_idle_waiting(w, now, &wait_budget);
    if (e == BX_OK)
        e = e3;
    bx_err e2 = expire_idle_active(w, now, &act_budget);
    if (e == BX_OK)
        e = e2;
    for (uint32_t i = 0; i < w->ncq; i++) {
        struct cq *c = w->cq[i];
        e2 = admit_run(w, c, now, true);
        if (e == BX_OK)
            e = e2;
        if (now > c->rate_at) {
            if (c->admitted_since > 0 || c->waiting > 0)
                c->rate_avg = queue_rate_update(c->rate_avg, &c->rate_weight, c->admitted_since, now - c->rate_at);
            c->admitted_since = 0;
            c->rate_at = now;
        }
        window_reset_if_empty(c);
    }
    pthread_mutex_unlock(&w->mu);
    return e;
}

/* See waitroom.h; concerts in order of first use. Under mu. */
static bx_err wm_stats(struct waitroom *base, struct waitroom_concert_stats *out, size_t cap, size_t *n)
{
    struct wm *w = wm_of(base);
    pthread_mutex_lock(&w->mu);
    size_t k = 0;
    for (uint32_t i = 0; i < w->ncq && k < cap; i++, k++) {
        const struct cq *c = w->cq[i];
        out[k] = (struct waitroom_concert_stats){.concert_id = c->concert_id,
                                                 .waiting = c->waiting,
                                                 .active = c->nact,
                                                 .admitted_total = c->admitted_total,
                                                 .admit_rate_avg = c->rate_avg,
                                                 .pace = c->pace};
    }
    *n = k;
    pthread_mutex_unlock(&w->mu);
    return BX_OK;
}

/* ---- ports: the asynchronous ops of waitroom.h over the ones above ---- */

/* One loop's port: answers that wait for the journal come back through rx. */
struct mem_port {
    struct waitroom_port base;
    h2o_multithread_receiver_t rx;
    int waits; /* answers on their way back (the loop's thread only) */
};

/* An answer waiting for durability; travels from the journal thread to the loop. */
struct mem_wait {
    h2o_multithread_message_t msg; /* first: the receiver hands back this */
    struct mem_port *port;
    waitroom_done_fn done;
    void *arg;
    bx_err e;
};

/* On the journal thread: hand the answer to the loop that waits. */
static void mem_wait_reached(void *arg, bx_err e)
{
    struct mem_wait *x = arg;
    x->e = e;
    h2o_multithread_send_message(&x->port->rx, &x->msg);
}

/* On the port's loop. */
static void mem_port_on_message(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages)
{
    (void)rx;
    while (!h2o_linklist_is_empty(messages)) {
        struct mem_wait *x = H2O_STRUCT_FROM_MEMBER(struct mem_wait, msg.link, messages->next);
        h2o_linklist_unlink(&x->msg.link);
        x->port->waits--;
        x->done(x->arg, x->e);
        free(x);
    }
}

/* done(arg, BX_OK) once every change so far is durable: at once when it is. */
static void answer_when_durable(struct waitroom_port *p, waitroom_done_fn done, void *arg)
{
    struct mem_wait *x = calloc(1, sizeof *x);
    if (x == NULL) {
        done(arg, BX_ERR_UNAVAILABLE);
        return;
    }
    *x = (struct mem_wait){.port = (struct mem_port *)p, .done = done, .arg = arg};
    int r = when_durable(p->room, mem_wait_reached, x);
    if (r == 1) {
        x->port->waits++;
        return;
    }
    free(x);
    done(arg, r == 0 ? BX_OK : BX_ERR_UNAVAILABLE);
}

static struct waitroom_port *mem_port_open(struct waitroom *w, h2o_evloop_t *loop, h2o_multithread_queue_t *queue)
{
    struct mem_port *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->base = (struct waitroom_port){.room = w, .loop = loop};
    h2o_multithread_register_receiver(queue, &p->rx, mem_port_on_message);
    return &p->base;
}

/* With answers still on their way (a server stopped past its drain deadline),
 * the port stays for the journal thread to send them to, until process exit. */
static void mem_port_close(struct waitroom_port *base)
{
    struct mem_port *p = (struct mem_port *)base;
    if (p->waits > 0)
        return;
    h2o_multithread_unregister_receiver(p->rx.queue, &p->rx);
    free(p);
}

static void port_ping(struct waitroom_port *p, waitroom_done_fn done, void *arg)
{
    done(arg, mem_ping(p->room));
}

/* Even a re-issue waits: the token it answers may not be durable yet. */
static void port_issue(struct waitroom_port *p, int64_t user_id, int64_t concert_id, int64_t now,
                       struct queue_ticket *out, bool *created, waitroom_done_fn done, void *arg)
{
    bx_err e = mem_issue(p->room, user_id, concert_id, now, out, created);
    if (e != BX_OK)
        done(arg, e);
    else
        answer_when_durable(p, done, arg);
}

static void port_status(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now,
                        struct queue_ticket *out, waitroom_done_fn done, void *arg)
{
    done(arg, mem_status(p->room, token, user_id, now, out));
}

static void port_require_active(struct waitroom_port *p, const char *token, int64_t user_id, int64_t concert_id,
                                int64_t now, waitroom_done_fn done, void *arg)
{
    done(arg, mem_require_active(p->room, token, user_id, concert_id, now));
}

static void port_leave(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now,
                       waitroom_done_fn done, void *arg)
{
    bx_err e = mem_leave(p->room, token, user_id, now);
    if (e != BX_OK)
        done(arg, e);
    else
        answer_when_durable(p, done, arg);
}

static void port_complete(struct waitroom_port *p, const char *token, int64_t user_id, int64_t now,
                          waitroom_done_fn done, void *arg)
{
    done(arg, mem_complete(p->room, token, user_id, now));
}

static void port_tick(struct waitroom_port *p, int64_t now, waitroom_done_fn done, void *arg)
{
    done(arg, mem_tick(p->room, now));
}

static const struct waitroom_ops wm_ops = {
    .name = "memory",
    .close = wm_close,
    .port_open = mem_port_open,
    .port_close = mem_port_close,
    .ping = port_ping,
    .issue = port_issue,
    .status = port_status,
    .require_active = port_require_active,
    .leave = port_leave,
    .complete = port_complete,
    .tick = port_tick,
    .stats = wm_stats,
};

/* ---- start-up ---- */

struct load_ctx {
    struct wm *w;
    int64_t now;
    bx_err err;
    const char *why;
    struct queue_record *dup; /* live tokens the room cannot hold (load_one): expired after the load */
    size_t ndup, dup_cap;
};

/* Keeps r to expire it in the store once the load is over. 0, or -1 when out of memory. */
static int load_drop(struct load_ctx *x, const struct queue_record *r)
{
    if (x->ndup == x->dup_cap) {
        size_t cap = x->dup_cap ? x->dup_cap * 2 : 8;
        struct queue_record *d = realloc(x->dup, cap * sizeof *d);
        if (d == NULL)
            return -1;
        x->dup = d;
        x->dup_cap = cap;
    }
    x->dup[x->ndup++] = *r;
    return 0;
}

/* Adds one live record from the store (ordered by concert, then seq) in the arena
 * slot its token names; its idle clock restarts at ctx->now. A live token this
 * room cannot hold is expired after the load, its holder issues anew: a second one
 * of the same (user, concert), one of another layout (the 32-character tokens of
 * earlier versions, which named no slot), or one naming a slot another token
 * already holds. Returns non-zero to stop the load on an error. */
static int load_one(const struct queue_record *r, void *arg)
{
    struct load_ctx *x = arg;
    struct wm *w = x->w;
    uint8_t raw[TOKEN_QUEUE_RAW];
    if (r->status != QUEUE_WAITING && r->status != QUEUE_ACTIVE)
        return 0; /* not live: nothing to queue */
    if (token_queue_decode(r->token, strnlen(r->token, sizeof r->token), raw) != 0)
        goto drop;
    uint32_t ci = concert_get(w, r->concert_id, r->seq, x->now);
    if (ci == NONE)
        goto oom;
    struct cq *c = w->cq[ci];
    if (r->seq < c->origin + (int64_t)c->next_rel || r->seq - c->origin >= (int64_t)REL_MAX) {
        x->err = BX_ERR_INTERNAL;
        x->why = "queue_load returned tokens out of sequence order";
        return 1;
    }
    uint32_t rel = (uint32_t)(r->seq - c->origin);
    uint32_t id = token_queue_slot(raw);
    if (find_user(w, r->user_id, ci) != NONE)
        goto drop;
    if (window_skip_to(c, rel) != 0 || window_room(c) != 0 || act_reserve(c) != 0 ||
        htab_reserve(w, H_USER, &w->by_user, 1) != 0)
        goto oom;
    int taken = tok_take_at(w, id);
    if (taken < 0)
        goto oom;
    if (taken > 0)
        goto drop;
    struct tok *t = &w->tok[id];
    t->cs = 0;
    if (tok_fill(w, id, r->user_id, token_queue_issued_ms(raw)) != 0)
        goto oom;
    memcpy(t->rnd, raw + TOKEN_QUEUE_RANDOM_AT, sizeof t->rnd);
    seen_set(w, id, x->now);
    if (r->status == QUEUE_WAITING) {
        tok_set(t, ci, ST_WAITING);
        t->aux = rel;
        window_push(c, id);
        c->waiting++;
        wheel_add(w, id, x->now);
    } else {
        tok_set(t, ci, ST_ACTIVE);
        c->act[c->nact] = (struct act){.activated_at = r->activated_at, .id = id, .rel = rel};
        t->aux = c->nact++;
        window_push(c, NONE);
        act_list_append(w, id);
    }
    htab_put(w, H_USER, &w->by_user, id);
    return 0;
drop:
    if (load_drop(x, r) == 0)
        return 0;
oom:
    x->err = BX_ERR_INTERNAL;
    x->why = "out of memory loading the waiting room";
    return 1;
}

/* See waitroom.h. Takes ownership of persist at once: it is closed on failure too.
 * Rebuilds every queue from the store's live tokens; a second live token of the
 * same (user, concert), which FIFO issue never creates, is expired. Not locked: no
 * other thread can see the object yet. */
struct waitroom *waitroom_mem_open(const struct waitroom_config *cfg, struct store *persist, int64_t now, char *err,
                                   size_t errlen)
{
    struct wm *w = NULL;
    if (cfg->active_max < 0 || !(cfg->admit_rate >= 0) || cfg->waiting_idle_ms <= 0 || cfg->active_idle_ms <= 0) {
        snprintf(err, errlen, "waiting room: active_max, admit_rate must be >= 0 and idle times > 0");
        goto fail;
    }
    if (sodium_init() < 0) {
        snprintf(err, errlen, "waiting room: libsodium failed to initialise");
        goto fail;
    }
    w = calloc(1, sizeof *w);
    if (w == NULL || htab_init(&w->by_user) != 0 || htab_init(&w->by_concert) != 0) {
        snprintf(err, errlen, "waiting room: out of memory");
        goto fail;
    }
    w->base.ops = &wm_ops;
    w->cfg = *cfg;
    w->free_head = NONE;
    w->epoch = now > INT64_MIN + SEEN_BACK ? now - SEEN_BACK : INT64_MIN;
    w->ibase = w->epoch;
    w->act_head = w->act_tail = NONE;
    memset(w->wheel.head, 0xff, sizeof w->wheel.head);
    memset(w->wheel.tail, 0xff, sizeof w->wheel.tail);
    w->wheel.base = now;
    /* buckets of about waiting_idle / 1020: an idle token is at most that far back */
    w->wheel.width = cfg->waiting_idle_ms / (WHEEL_SLOTS - 4) + 1;
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        snprintf(err, errlen, "waiting room: cannot create its mutex");
        goto fail;
    }
    if (pthread_mutex_init(&w->pmu, NULL) != 0 || pthread_cond_init(&w->j.wake, NULL) != 0) {
        snprintf(err, errlen, "waiting room: cannot create its mutex");
        pthread_mutex_destroy(&w->mu);
        goto fail;
    }
    w->persist = persist;
    persist = NULL; /* w owns it now */
    if (w->persist) {
        struct load_ctx x = {.w = w, .now = now, .err = BX_OK};
        bx_err e = w->persist->ops->queue_load(w->persist, load_one, &x);
        if (e == BX_OK && x.err != BX_OK)
            e = x.err;
        for (size_t i = 0; e == BX_OK && i < x.ndup; i++) {
            struct queue_record r = x.dup[i];
            r.status = QUEUE_EXPIRED;
            r.expires_at = now;
            e = save(w, &r);
        }
        free(x.dup);
        free_list_rebuild(w);
        if (e != BX_OK) {
            snprintf(err, errlen, "waiting room: cannot load the queue: %s",
                     x.why ? x.why : bx_err_info(e)->message);
            wm_close(&w->base);
            return NULL;
        }
        if (pthread_create(&w->j.thread, NULL, journal_main, w) != 0) {
            snprintf(err, errlen, "waiting room: cannot start its journal thread");
            wm_close(&w->base);
            return NULL;
        }
        w->j.running = true;
    }
    return &w->base;
fail:
    if (w) {
        free(w->by_user.slot);
        free(w->by_concert.slot);
        free(w);
    }
    if (persist)
        persist->ops->close(persist);
    return NULL;
}
