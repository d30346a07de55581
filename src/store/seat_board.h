/* seat_board.h — the seats of each schedule that someone looked at, in memory, so
 * that a seat map or a date list is a copy out of memory instead of a store read
 * of every seat.
 *
 * Whoever owns a board applies each committed change to it, in commit order,
 * before any answer that depends on the change goes out, so a map read after an
 * answer shows what the answer said: the embedded group-commit writer (one board
 * per process, store/astore_sqlite.c) and PostgreSQL's notifications of seat
 * changes (one board per loop in scale-out). A hold that ends needs no change:
 * readers compare its end with their clock, as the store does. A change the
 * owner cannot name (a failed commit, missed notifications) forgets everything:
 * the next map reads the store again. Each board locks itself. */
#ifndef BX_STORE_SEAT_BOARD_H
#define BX_STORE_SEAT_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "domain/types.h"

struct seat_board;

struct seat_board *seat_board_new(void); /* NULL when out of memory */
void seat_board_free(struct seat_board *b);

/* The schedule's seats when known: *version (unique across schedules and time,
 * never 0) changes with every change to them; seats copied into *buf (grown as
 * needed, the caller frees it) only when want_seats. 0 when not known. */
int seat_board_get(struct seat_board *b, int64_t schedule_id, uint64_t *version, int64_t *concert_id, int want_seats, struct seat **buf,
                   size_t *cap, size_t *n);

/* The schedule's concert and number of seats, when known (neither ever changes). */
int seat_board_info(struct seat_board *b, int64_t schedule_id, int64_t *concert_id, int32_t *seat_count);

/* The schedule's seats neither SOLD nor under a hold live at `now`, when known. */
int seat_board_available(struct seat_board *b, int64_t schedule_id, int64_t now, int32_t *available);

/* Taken before a store read of the seats; seat_board_put keeps that read only
 * when no change was applied since (otherwise the read may miss one). */
uint64_t seat_board_epoch(struct seat_board *b);
void seat_board_put(struct seat_board *b, uint64_t epoch, int64_t schedule_id, int64_t concert_id, const struct seat *seats, size_t n);

/* A committed change of one seat: SEAT_HELD until hold_ends_at, SEAT_SOLD, or
 * SEAT_AVAILABLE. A seat of a schedule the board does not know is ignored. */
void seat_board_set(struct seat_board *b, int64_t schedule_id, int32_t seat_no, enum seat_status status, int64_t hold_ends_at);
/* A committed change to an unknown seat, or a commit that may have happened. */
void seat_board_forget_all(struct seat_board *b);

#endif
