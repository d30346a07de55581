/* money.c — checked won arithmetic; see money.h. */
#include "domain/money.h"

bool money_add_checked(int64_t a, int64_t b, int64_t *out)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return false;
    *out = r;
    return true;
}

bool money_sub_checked(int64_t a, int64_t b, int64_t *out)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r))
        return false;
    *out = r;
    return true;
}

bool money_charge_amount_valid(int64_t amount)
{
    return amount > 0 && amount <= MONEY_CHARGE_MAX;
}

bool money_charge_fits(int64_t balance, int64_t amount)
{
    int64_t sum = 0;
    return balance >= 0 && amount >= 0 && money_add_checked(balance, amount, &sum) && sum <= MONEY_BALANCE_MAX;
}

bool money_can_debit(int64_t balance, int64_t price)
{
    return balance >= 0 && price >= 0 && price <= balance;
}
