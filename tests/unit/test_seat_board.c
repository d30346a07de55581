/* test_seat_board.c — the in-memory seat board of embedded mode (store/seat_board.c):
 * what a reader gets back, how changes and their versions land, and the rule that
 * keeps a store read made across a change from being kept. */
#include "store/seat_board.h"
#include "store/seat_changes.h"

#include <criterion/criterion.h>
#include <stdlib.h>

#define T0 1000000 /* ms */

/* n seats 1..n at price, all AVAILABLE */
static struct seat *fresh_seats(size_t n, int64_t price)
{
    struct seat *s = calloc(n, sizeof *s);
    cr_assert_not_null(s);
    for (size_t i = 0; i < n; i++)
        s[i] = (struct seat){.seat_no = (int32_t)i + 1, .price = price, .available = true, .status = SEAT_AVAILABLE};
    return s;
}

static struct seat_board *b;

static void setup(void)
{
    b = seat_board_new();
    cr_assert_not_null(b);
}

static void teardown(void)
{
    seat_board_free(b);
}

TestSuite(seat_board, .init = setup, .fini = teardown);

Test(seat_board, a_schedule_nobody_read_is_not_known)
{
    uint64_t v;
    int64_t concert;
    int32_t avail;
    cr_assert_not(seat_board_get(b, 7, &v, &concert, 0, NULL, NULL, NULL));
    cr_assert_not(seat_board_available(b, 7, T0, &avail));
}

Test(seat_board, a_kept_read_comes_back_with_its_concert_and_seats)
{
    struct seat *in = fresh_seats(10, 700);
    seat_board_put(b, seat_board_epoch(b), 7, 3, in, 10);
    free(in);
    uint64_t v = 0;
    int64_t concert = 0;
    struct seat *buf = NULL;
    size_t cap = 0, n = 0;
    cr_assert(seat_board_get(b, 7, &v, &concert, 1, &buf, &cap, &n));
    cr_assert_eq(concert, 3);
    cr_assert_neq(v, 0);
    cr_assert_eq(n, 10);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(buf[i].seat_no, (int32_t)i + 1);
        cr_assert_eq(buf[i].price, 700);
        cr_assert_eq(buf[i].status, SEAT_AVAILABLE);
    }
    free(buf);
}

Test(seat_board, each_change_moves_the_version_and_the_free_count)
{
    struct seat *in = fresh_seats(10, 700);
    seat_board_put(b, seat_board_epoch(b), 7, 3, in, 10);
    free(in);
    uint64_t v0, v1, v2;
    int64_t concert;
    int32_t avail;
    cr_assert(seat_board_get(b, 7, &v0, &concert, 0, NULL, NULL, NULL));
    seat_board_set(b, 7, 4, SEAT_HELD, T0 + 5000);
    cr_assert(seat_board_get(b, 7, &v1, &concert, 0, NULL, NULL, NULL));
    cr_assert_neq(v1, v0);
    cr_assert(seat_board_available(b, 7, T0, &avail));
    cr_assert_eq(avail, 9);
    seat_board_set(b, 7, 4, SEAT_SOLD, 0);
    cr_assert(seat_board_get(b, 7, &v2, &concert, 0, NULL, NULL, NULL));
    cr_assert_neq(v2, v1);
    cr_assert(seat_board_available(b, 7, T0 + 60000, &avail));
    cr_assert_eq(avail, 9, "a sold seat stays taken");
}

Test(seat_board, a_hold_that_ended_counts_as_free_without_a_change)
{
    struct seat *in = fresh_seats(5, 100);
    seat_board_put(b, seat_board_epoch(b), 8, 1, in, 5);
    free(in);
    seat_board_set(b, 8, 2, SEAT_HELD, T0 + 1000);
    seat_board_set(b, 8, 3, SEAT_HELD, T0 + 3000);
    int32_t avail;
    cr_assert(seat_board_available(b, 8, T0 + 999, &avail));
    cr_assert_eq(avail, 3);
    cr_assert(seat_board_available(b, 8, T0 + 1000, &avail));
    cr_assert_eq(avail, 4, "the first hold ended at T0 + 1000");
    cr_assert(seat_board_available(b, 8, T0 + 3000, &avail));
    cr_assert_eq(avail, 5);
    /* a seat held again after its hold ended is taken again */
    seat_board_set(b, 8, 2, SEAT_HELD, T0 + 9000);
    cr_assert(seat_board_available(b, 8, T0 + 3000, &avail));
    cr_assert_eq(avail, 4);
}

Test(seat_board, a_read_made_across_a_change_is_not_kept)
{
    struct seat *in = fresh_seats(5, 100);
    uint64_t epoch = seat_board_epoch(b); /* a loop starts its store read here */
    seat_board_set(b, 9, 1, SEAT_HELD, T0 + 1000); /* the writer commits a hold meanwhile */
    seat_board_put(b, epoch, 9, 1, in, 5);         /* the read may predate the hold */
    uint64_t v;
    int64_t concert;
    cr_assert_not(seat_board_get(b, 9, &v, &concert, 0, NULL, NULL, NULL), "a possibly stale read was kept");
    seat_board_put(b, seat_board_epoch(b), 9, 1, in, 5); /* read again after it: kept */
    cr_assert(seat_board_get(b, 9, &v, &concert, 0, NULL, NULL, NULL));
    free(in);
}

Test(seat_board, forgetting_drops_every_schedule_and_a_change_to_an_unknown_seat_forgets_its_schedule)
{
    struct seat *in = fresh_seats(5, 100);
    seat_board_put(b, seat_board_epoch(b), 10, 1, in, 5);
    seat_board_put(b, seat_board_epoch(b), 11, 1, in, 5);
    free(in);
    uint64_t v;
    int64_t concert;
    seat_board_forget_all(b);
    cr_assert_not(seat_board_get(b, 10, &v, &concert, 0, NULL, NULL, NULL));
    cr_assert_not(seat_board_get(b, 11, &v, &concert, 0, NULL, NULL, NULL));
    in = fresh_seats(5, 100);
    seat_board_put(b, seat_board_epoch(b), 10, 1, in, 5);
    free(in);
    seat_board_set(b, 10, 6, SEAT_HELD, T0 + 1000); /* the store has a seat 6 the board never saw */
    cr_assert_not(seat_board_get(b, 10, &v, &concert, 0, NULL, NULL, NULL));
}

Test(seat_board, versions_never_repeat_across_schedules_and_reloads)
{
    struct seat *in = fresh_seats(3, 100);
    uint64_t a, a2, c;
    int64_t concert;
    seat_board_put(b, seat_board_epoch(b), 12, 1, in, 3);
    seat_board_put(b, seat_board_epoch(b), 13, 1, in, 3);
    cr_assert(seat_board_get(b, 12, &a, &concert, 0, NULL, NULL, NULL));
    cr_assert(seat_board_get(b, 13, &a2, &concert, 0, NULL, NULL, NULL));
    cr_assert_neq(a, a2);
    seat_board_forget_all(b);
    seat_board_put(b, seat_board_epoch(b), 12, 1, in, 3);
    cr_assert(seat_board_get(b, 12, &c, &concert, 0, NULL, NULL, NULL));
    cr_assert_neq(c, a, "a reloaded schedule must not match a map cached before");
    free(in);
}

Test(seat_board, many_schedules_stay_findable_as_the_table_grows)
{
    struct seat *in = fresh_seats(2, 100);
    for (int64_t id = 1; id <= 300; id++)
        seat_board_put(b, seat_board_epoch(b), id * 7, id, in, 2);
    free(in);
    for (int64_t id = 1; id <= 300; id++) {
        uint64_t v;
        int64_t concert = 0;
        cr_assert(seat_board_get(b, id * 7, &v, &concert, 0, NULL, NULL, NULL), "schedule %lld lost", (long long)id * 7);
        cr_assert_eq(concert, id);
    }
}

/* ---- the bx_seats notification payload (store/seat_changes.c) ---- */

struct collected {
    struct seat_change c[8];
    int n;
};

static void collect(void *arg, const struct seat_change *c)
{
    struct collected *x = arg;
    if (x->n < 8)
        x->c[x->n] = *c;
    x->n++;
}

Test(seat_changes, a_payload_of_several_changes_gives_each_seat_state_in_order)
{
    struct collected x = {0};
    cr_assert(seat_changes_parse("3,760,H,1796297846794;5,84,S,0;12,1,A,0", collect, &x));
    cr_assert_eq(x.n, 3);
    cr_assert(x.c[0].schedule_id == 3 && x.c[0].seat_no == 760 && x.c[0].status == SEAT_HELD &&
              x.c[0].hold_end == 1796297846794LL);
    cr_assert(x.c[1].schedule_id == 5 && x.c[1].seat_no == 84 && x.c[1].status == SEAT_SOLD && x.c[1].hold_end == 0);
    cr_assert(x.c[2].schedule_id == 12 && x.c[2].seat_no == 1 && x.c[2].status == SEAT_AVAILABLE);
}

Test(seat_changes, one_change_alone_is_read)
{
    struct collected x = {0};
    cr_assert(seat_changes_parse("8,679,H,1796297846828", collect, &x));
    cr_assert_eq(x.n, 1);
    cr_assert(x.c[0].schedule_id == 8 && x.c[0].seat_no == 679 && x.c[0].hold_end == 1796297846828LL);
}

Test(seat_changes, anything_off_the_grammar_is_refused)
{
    static const char *const bad[] = {"",          "3,760,H",        "3,760,X,0",      "3,760,H,1;",
                                      "3,,H,1",    "3,760,H,1,2",    "3;760,H,1",      "-3,760,H,1",
                                      "3,760,A,5", "3,3000000000,H,1", "99999999999999999999,1,A,0", "3,760,H,1x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct collected x = {0};
        cr_assert_not(seat_changes_parse(bad[i], collect, &x), "accepted \"%s\"", bad[i]);
    }
}
