/* money.h — won arithmetic (CONTRACT §3): int64, checked, never floating point. */
#ifndef BX_DOMAIN_MONEY_H
#define BX_DOMAIN_MONEY_H

#include <stdbool.h>
#include <stdint.h>

#define MONEY_CHARGE_MAX 10000000LL       /* per charge */
#define MONEY_BALANCE_MAX 1000000000000LL /* 1e12 */
#define MONEY_PRICE_MAX 100000000LL       /* per seat */

/* *out = a + b; false on int64 overflow (out untouched). */
bool money_add_checked(int64_t a, int64_t b, int64_t *out);
/* *out = a - b; false on overflow (out untouched). */
bool money_sub_checked(int64_t a, int64_t b, int64_t *out);
/* A charge amount the API accepts: 1..MONEY_CHARGE_MAX. */
bool money_charge_amount_valid(int64_t amount);
/* balance + amount stays within 0..MONEY_BALANCE_MAX. */
bool money_charge_fits(int64_t balance, int64_t amount);
/* price <= balance, both non-negative: the debit leaves balance >= 0 (invariant 2). */
bool money_can_debit(int64_t balance, int64_t price);

#endif
