/* log.c — see log.h. Messages become JSON lines too, so one parser reads the whole log. */
#include "util/log.h"
#include "util/clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum log_level log_threshold = LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error"};

int log_parse_level(const char *s, enum log_level *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    return -1;
}

void log_line(const char *line, int len)
{
    char buf[4096];
    if (len < 0)
        return;
    if ((size_t)len >= sizeof buf - 1)
        len = (int)sizeof buf - 2;
    memcpy(buf, line, (size_t)len);
    buf[len] = '\n';
    ssize_t r = write(STDERR_FILENO, buf, (size_t)len + 1);
    (void)r; /* nowhere left to report a failed log write */
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < log_threshold)
        return;
    char msg[1024], line[2048], ts[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* escape the message for JSON */
    char esc[1536];
    size_t j = 0;
    for (size_t i = 0; msg[i] && j < sizeof esc - 7; i++) {
        unsigned char c = (unsigned char)msg[i];
        if (c == '"' || c == '\\') {
            esc[j++] = '\\';
            esc[j++] = (char)c;
        } else if (c < 0x20) {
            j += (size_t)snprintf(esc + j, sizeof esc - j, "\\u%04x", c);
        } else {
            esc[j++] = (char)c;
        }
    }
    esc[j] = '\0';
    int n = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}",
                     clock_format_rfc3339(clock_now_ms(), ts, sizeof ts), level_names[level], esc);
    log_line(line, n < (int)sizeof line ? n : (int)sizeof line - 1);
}
