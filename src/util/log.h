/* log.h — leveled logging to stderr; request lines are one JSON object each.
 * Thread-safe: each line is written with a single write(2). */
#ifndef BX_UTIL_LOG_H
#define BX_UTIL_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

extern enum log_level log_threshold;

/* "debug" | "info" | "warn" | "error"; 0 on success. */
int log_parse_level(const char *s, enum log_level *out);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes an already formatted line (a JSON object) followed by a newline. */
void log_line(const char *line, int len);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
