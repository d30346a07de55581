/* clock.h — wall-clock time in Unix milliseconds and RFC 3339 UTC text. */
#ifndef BX_UTIL_CLOCK_H
#define BX_UTIL_CLOCK_H

#include <stddef.h>
#include <stdint.h>

int64_t clock_now_ms(void);
/* Monotonic milliseconds, for durations. */
int64_t clock_mono_ms(void);
/* "2026-11-25T08:30:00.123Z"; buf needs 25 bytes. Returns buf. */
char *clock_format_rfc3339(int64_t ms, char *buf, size_t len);
/* Parses "YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)"; 0 on success. */
int clock_parse_rfc3339(const char *s, size_t len, int64_t *ms);

#endif
