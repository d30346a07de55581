/* request_id.h — the X-Request-Id of each API answer: 16 lowercase hex digits,
 * unique per process run, cheap (no system call per request). Not a secret. */
#ifndef BX_UTIL_REQUEST_ID_H
#define BX_UTIL_REQUEST_ID_H

#define REQUEST_ID_LEN 16

/* Writes a fresh id and its NUL into out (REQUEST_ID_LEN + 1 bytes). Thread
 * safe; sodium_init() must have run. */
void request_id_new(char out[REQUEST_ID_LEN + 1]);

#endif
