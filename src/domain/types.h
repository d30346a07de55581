/* types.h — the domain records of CONTRACT §3, shared by api/, store/ and queue/.
 * Plain data only. Times are Unix milliseconds (UTC); money is int64 won. */
#ifndef BX_DOMAIN_TYPES_H
#define BX_DOMAIN_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BX_NAME_MAX 64      /* bytes of UTF-8 in a user name */
#define BX_TEXT_MAX 200     /* bytes of UTF-8 in a title or venue */
#define BX_PWHASH_MAX 128   /* crypto_pwhash_STRBYTES */
#define BX_IDEM_KEY_MAX 64
#define BX_QUEUE_TOKEN_LEN 35 /* 26 bytes (util/token.h), base64url without padding */

struct user {
    int64_t id;
    char name[BX_NAME_MAX + 1];
    char pwhash[BX_PWHASH_MAX + 1];
    int64_t balance;
};

struct concert {
    int64_t id;
    char title[BX_TEXT_MAX + 1];
    char venue[BX_TEXT_MAX + 1];
};

struct schedule {
    int64_t id;
    int64_t concert_id;
    int64_t starts_at;
    int64_t sale_opens_at;
    int64_t sale_closes_at;
    int32_t seat_count;
    int32_t available; /* seats neither SOLD nor under a live hold, at the time of reading */
};

/* A HELD seat whose hold expired reads AVAILABLE (CONTRACT §6). */
enum seat_status { SEAT_AVAILABLE = 0, SEAT_HELD, SEAT_SOLD };

struct seat {
    int32_t seat_no;
    int64_t price;
    bool available; /* status == SEAT_AVAILABLE */
    enum seat_status status;
    int64_t hold_ends_at; /* SEAT_HELD: when the hold ends; else 0 */
};

enum reservation_status { RES_HELD = 0, RES_CONFIRMED, RES_EXPIRED, RES_CANCELLED };

struct reservation {
    int64_t id;
    int64_t user_id;
    int64_t schedule_id;
    int64_t concert_id;
    int32_t seat_no;
    int64_t price;
    enum reservation_status status; /* a HELD row past expires_at is reported as RES_EXPIRED */
    int64_t held_at;
    int64_t expires_at;
    int64_t confirmed_at; /* 0 unless CONFIRMED */
};

struct payment {
    int64_t id;
    int64_t user_id;
    int64_t reservation_id;
    int64_t amount;
    int64_t balance_after;
    int64_t paid_at;
};

/* Idempotency of a money-moving call. key == NULL: no key sent. The request
 * hash covers the body, so the same key with another body is refused (422). */
struct idem {
    const char *key;
    unsigned char request_hash[32];
};

enum ledger_kind { LEDGER_CHARGE = 0, LEDGER_PAYMENT, LEDGER_REFUND };

const char *reservation_status_name(enum reservation_status s);
const char *seat_status_name(enum seat_status s);

#endif
