/* seat_board.h — the seats of each schedule that someone looked at, in memory, for
 * seat maps in embedded mode (one process, one writer thread commits every seat
 * change). A seat map is then a copy out of memory instead of a store read of
 * every seat.
 *
 * The writer applies each change after its commit, in commit order, before the
 * answer goes out (workers_write's `committed`), so a map read after an answer
 * shows what the answer said. A hold that ends needs no change: readers compare
 * its end with their clock, as the store does. A change that does not name its
 * seat (a cancel) and a failed commit forget everything: the next map reads the
 * store again. Shared by all loops under one mutex. */
#ifndef BX_API_SEAT_BOARD_H
#define BX_API_SEAT_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "domain/types.h"

/* The schedule's seats when known: *version (unique across schedules and time,
 * never 0) changes with every change to them; seats copied into *buf (grown as
 * needed, the caller frees it) only when want_seats. 0 when not known. */
int seat_board_get(int64_t schedule_id, uint64_t *version, int64_t *concert_id, int want_seats, struct seat **buf,
                   size_t *cap, size_t *n);

/* The schedule's seats neither SOLD nor under a hold live at `now`, when known. */
int seat_board_available(int64_t schedule_id, int64_t now, int32_t *available);

/* Taken before a store read of the seats; seat_board_put keeps that read only
 * when no change was applied since (otherwise the read may miss one). */
uint64_t seat_board_epoch(void);
void seat_board_put(uint64_t epoch, int64_t schedule_id, int64_t concert_id, const struct seat *seats, size_t n);

/* A committed hold (status SEAT_HELD, hold_ends_at) or sale (SEAT_SOLD). */
void seat_board_set(int64_t schedule_id, int32_t seat_no, enum seat_status status, int64_t hold_ends_at);
/* A committed change to an unknown seat, or a commit that may have happened. */
void seat_board_forget_all(void);

#endif
