/* redis_scripts.h — the Lua scripts of the Redis waiting room (waitroom_redis.c).
 * Each operation on one concert is one script, so it runs atomically on the Redis
 * server: however many boxoffice instances call them at once, no token is admitted
 * twice and a concert never has more than active_max ACTIVE tokens. Private to
 * waitroom_redis.c; the key and argument layout below is its contract.
 *
 * Every script touches only keys of one concert, all carrying the hash tag {NS:C}
 * (one Redis Cluster slot):
 *   KEYS[1] {NS:C}:seq    STRING  issue counter (INCR): the FIFO sequence number
 *   KEYS[2] {NS:C}:wq     ZSET    WAITING tokens scored by seq   (ZRANK = position - 1)
 *   KEYS[3] {NS:C}:wl     ZSET    WAITING tokens scored by last_seen (idle expiry)
 *   KEYS[4] {NS:C}:al     ZSET    ACTIVE tokens scored by last_seen (ZCARD = active)
 *   KEYS[5] {NS:C}:users  HASH    user id -> live token (re-issue)
 *   KEYS[6] {NS:C}:st     HASH    budget, refill_at, rate, rate_at, admitted_total,
 *                                 admitted_since, departed_total (WAITING tokens
 *                                 that left or expired), issued_at (last issue)
 *   KEYS[7] {NS:C}:t:TOK  HASH    one token: u user, s W|A|E, q seq, i issued_at,
 *                                 a activated_at, e expired_at; TTL once EXPIRED
 * Other tokens' hashes ({NS:C}:t:* promoted or expired by a script) are derived
 * from ARGV[1], the same tag, so they live in the same slot as the declared keys.
 *
 * Common ARGV: [1] token key prefix "{NS:C}:t:", [2] now (ms, from the caller: the
 * scripts never read the server clock), [3] active_max, [4] admit_rate,
 * [5] waiting_idle_ms, [6] active_idle_ms, [7] seconds an EXPIRED token is remembered.
 * Script-specific arguments follow from ARGV[8].
 *
 * Replies start with a code: 0 ok, 1 unknown token, 2 another user's, 3 expired,
 * 4 not active, 5 token already exists (issue: draw another). A ticket reply is
 * {0, status "W"|"A", position, measured rate as "%.17g", admitted_total,
 * departed_total}: the counters read with the position let the caller estimate
 * the position later without a round trip (redis_view.h). ETA and pollAfterMs are
 * computed by the caller with domain/queue_rules.c. The concert's figures, as
 * the tick and the view refresh reply them, are {waiting, active, 1 when an
 * expiry batch was full, 1 when the concert may be forgotten, admitted_total,
 * departed_total, rate}.
 *
 * rate_update() and admissible() mirror queue_rate_update() and queue_admissible()
 * of domain/queue_rules.c operation for operation (both are IEEE doubles; the unit
 * tests compare the results with the C functions). Keep them in step. */
#ifndef BX_QUEUE_REDIS_SCRIPTS_H
#define BX_QUEUE_REDIS_SCRIPTS_H

#define RS_PRELUDE                                                                                                     \
    "local K_SEQ, K_WQ, K_WL, K_AL, K_USERS, K_ST = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]\n"            \
    "local PFX, NOW_S = ARGV[1], ARGV[2]\n"                                                                            \
    "local NOW, ACTIVE_MAX, ADMIT_RATE = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n"                    \
    "local WAIT_IDLE, ACT_IDLE = tonumber(ARGV[5]), tonumber(ARGV[6])\n"                                               \
    "local function num(x) return tonumber(x) or 0 end\n"                                                              \
    "local function fmt(x) return string.format('%.17g', x) end\n"                                                     \
    "local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end\n"                              \
    "-- queue_admissible(): returns the count and the refilled budget\n"                                               \
    "local function admissible(active, budget, elapsed)\n"                                                             \
    "  local free = ACTIVE_MAX - active\n"                                                                             \
    "  if free <= 0 then free = 0 end\n"                                                                               \
    "  if not (ADMIT_RATE > 0) then return free, budget end\n"                                                         \
    "  local cap = 1\n"                                                                                                \
    "  if ADMIT_RATE > 1 then cap = ADMIT_RATE end\n"                                                                  \
    "  local b = budget\n"                                                                                             \
    "  if not (b >= 0) then b = 0 end\n"                                                                               \
    "  if elapsed > 0 then b = b + ADMIT_RATE * elapsed / 1000.0 end\n"                                                \
    "  if not (b <= cap) then b = cap end\n"                                                                           \
    "  local whole = math.floor(b)\n"                                                                                  \
    "  if whole >= free then return free, b end\n"                                                                     \
    "  return whole, b\n"                                                                                              \
    "end\n"                                                                                                            \
    "-- queue_rate_update(): returns the new average and weight\n"                                                     \
    "local function rate_update(avg, w, admitted, elapsed)\n"                                                          \
    "  if not (avg >= 0) or not finite(avg) or not (w >= 0 and w <= 1) then avg = 0; w = 0 end\n"                      \
    "  if elapsed <= 0 then return avg, w end\n"                                                                       \
    "  if admitted < 0 then admitted = 0 end\n"                                                                        \
    "  local sample = admitted * 1000.0 / elapsed\n"                                                                   \
    "  local alpha = 1.0 - math.exp(-elapsed / 10000.0)\n"                                                             \
    "  local nw = w + alpha * (1.0 - w)\n"                                                                             \
    "  local r = avg\n"                                                                                                \
    "  if nw > 0 then r = avg + alpha / nw * (sample - avg) end\n"                                                     \
    "  if nw > 1 then nw = 1 end\n"                                                                                    \
    "  if r >= 0 and finite(r) then return r, nw end\n"                                                                \
    "  return 0, nw\n"                                                                                                 \
    "end\n"                                                                                                            \
    "-- Admits the oldest WAITING tokens into free slots within the admit_rate budget.\n"                              \
    "local function admit_run()\n"                                                                                     \
    "  local st = redis.call('HMGET', K_ST, 'budget', 'refill_at')\n"                                                  \
    "  local budget, refill_at, elapsed = num(st[1]), num(st[2]), 0\n"                                                 \
    "  if NOW > refill_at then elapsed = NOW - refill_at; refill_at = NOW end\n"                                       \
    "  local n\n"                                                                                                      \
    "  n, budget = admissible(redis.call('ZCARD', K_AL), budget, elapsed)\n"                                           \
    "  local waiting = redis.call('ZCARD', K_WQ)\n"                                                                    \
    "  if n > waiting then n = waiting end\n"                                                                          \
    "  if n > 0 then\n"                                                                                                \
    "    local popped = redis.call('ZPOPMIN', K_WQ, n)\n"                                                              \
    "    for i = 1, #popped, 2 do\n"                                                                                   \
    "      local tok = popped[i]\n"                                                                                    \
    "      redis.call('ZREM', K_WL, tok)\n"                                                                            \
    "      redis.call('ZADD', K_AL, NOW_S, tok)\n"                                                                     \
    "      redis.call('HSET', PFX .. tok, 's', 'A', 'a', NOW_S)\n"                                                     \
    "    end\n"                                                                                                        \
    "    if ADMIT_RATE > 0 then budget = budget - n end\n"                                                             \
    "    redis.call('HINCRBY', K_ST, 'admitted_total', n)\n"                                                           \
    "    redis.call('HINCRBY', K_ST, 'admitted_since', n)\n"                                                           \
    "  end\n"                                                                                                          \
    "  redis.call('HSET', K_ST, 'budget', fmt(budget), 'refill_at', fmt(refill_at))\n"                                 \
    "end\n"                                                                                                            \
    "-- A live token becomes EXPIRED: out of its sets, remembered for a while.\n"                                      \
    "local function expire(tok, user, s)\n"                                                                            \
    "  if s == 'W' then\n"                                                                                             \
    "    redis.call('ZREM', K_WQ, tok); redis.call('ZREM', K_WL, tok)\n"                                               \
    "    redis.call('HINCRBY', K_ST, 'departed_total', 1)\n"                                                           \
    "  else redis.call('ZREM', K_AL, tok) end\n"                                                                       \
    "  redis.call('HSET', PFX .. tok, 's', 'E', 'e', NOW_S)\n"                                                         \
    "  redis.call('EXPIRE', PFX .. tok, ARGV[7])\n"                                                                    \
    "  if user and redis.call('HGET', K_USERS, user) == tok then redis.call('HDEL', K_USERS, user) end\n"              \
    "end\n"                                                                                                            \
    "-- 0 and the status of the user's live token, or an error code.\n"                                                \
    "local function resolve(tok, user)\n"                                                                              \
    "  local h = redis.call('HMGET', PFX .. tok, 'u', 's')\n"                                                          \
    "  if not h[1] then return 1 end\n"                                                                                \
    "  if h[1] ~= user then return 2 end\n"                                                                            \
    "  if h[2] ~= 'W' and h[2] ~= 'A' then return 3 end\n"                                                             \
    "  return 0, h[2]\n"                                                                                               \
    "end\n"                                                                                                            \
    "local function touch(tok, s)\n"                                                                                   \
    "  if s == 'A' then redis.call('ZADD', K_AL, NOW_S, tok) else redis.call('ZADD', K_WL, NOW_S, tok) end\n"          \
    "end\n"                                                                                                            \
    "local function ticket(tok, s)\n"                                                                                  \
    "  local pos = 0\n"                                                                                                \
    "  if s == 'W' then pos = redis.call('ZRANK', K_WQ, tok) + 1 end\n"                                                \
    "  local st = redis.call('HMGET', K_ST, 'rate', 'admitted_total', 'departed_total')\n"                             \
    "  return {0, s, pos, st[1] or '0', num(st[2]), num(st[3])}\n"                                                     \
    "end\n"                                                                                                            \
    "local function figures(full, forget)\n"                                                                           \
    "  local st = redis.call('HMGET', K_ST, 'admitted_total', 'departed_total', 'rate')\n"                             \
    "  return {redis.call('ZCARD', K_WQ), redis.call('ZCARD', K_AL), full, forget, num(st[1]), num(st[2]),\n"          \
    "          st[3] or '0'}\n"                                                                                        \
    "end\n"

/* ARGV[8] user, ARGV[9] a fresh token (KEYS[7] its hash). Returns the user's live
 * token, touched, or creates the new one WAITING and runs admission (so it is
 * ACTIVE at once when a slot is free and nobody waits ahead). Reply: a ticket
 * followed by the token and 1 when created, 0 when re-issued. */
#define RS_ISSUE                                                                                                       \
    RS_PRELUDE                                                                                                         \
    "local user, tok = ARGV[8], ARGV[9]\n"                                                                             \
    "local cur = redis.call('HGET', K_USERS, user)\n"                                                                  \
    "if cur then\n"                                                                                                    \
    "  local s = redis.call('HGET', PFX .. cur, 's')\n"                                                                \
    "  if s == 'W' or s == 'A' then\n"                                                                                 \
    "    touch(cur, s)\n"                                                                                              \
    "    local r = ticket(cur, s); r[7] = cur; r[8] = 0; return r\n"                                                   \
    "  end\n"                                                                                                          \
    "  redis.call('HDEL', K_USERS, user)\n"                                                                            \
    "end\n"                                                                                                            \
    "if redis.call('EXISTS', KEYS[7]) == 1 then return {5} end\n"                                                      \
    "if redis.call('EXISTS', K_ST) == 0 then\n"                                                                        \
    "  local full = 1\n"                                                                                               \
    "  if ADMIT_RATE > 1 then full = ADMIT_RATE end\n"                                                                 \
    "  redis.call('HSET', K_ST, 'budget', fmt(full), 'refill_at', NOW_S, 'rate_at', NOW_S,\n"                          \
    "             'rate', '0', 'rate_w', '0',\n"                                                                       \
    "             'admitted_total', 0, 'admitted_since', 0)\n"                                                         \
    "end\n"                                                                                                            \
    "local seq = redis.call('INCR', K_SEQ)\n"                                                                          \
    "redis.call('HSET', KEYS[7], 'u', user, 's', 'W', 'q', seq, 'i', NOW_S)\n"                                         \
    "redis.call('ZADD', K_WQ, seq, tok)\n"                                                                             \
    "redis.call('ZADD', K_WL, NOW_S, tok)\n"                                                                           \
    "redis.call('HSET', K_USERS, user, tok)\n"                                                                         \
    "redis.call('HSET', K_ST, 'issued_at', NOW_S)\n"                                                                   \
    "admit_run()\n"                                                                                                    \
    "local r = ticket(tok, redis.call('HGET', KEYS[7], 's')); r[7] = tok; r[8] = 1; return r\n"

/* ARGV[8] user, ARGV[9] token. Touches a live token; reply: a ticket. */
#define RS_STATUS                                                                                                      \
    RS_PRELUDE                                                                                                         \
    "local code, s = resolve(ARGV[9], ARGV[8])\n"                                                                      \
    "if code ~= 0 then return {code} end\n"                                                                            \
    "touch(ARGV[9], s)\n"                                                                                              \
    "return ticket(ARGV[9], s)\n"

/* ARGV[8] user, ARGV[9] token, ARGV[10] "1" when the token's concert is the one
 * asked for. Touches the token only when it opens the booking endpoints. */
#define RS_REQUIRE_ACTIVE                                                                                              \
    RS_PRELUDE                                                                                                         \
    "local code, s = resolve(ARGV[9], ARGV[8])\n"                                                                      \
    "if code ~= 0 then return {code} end\n"                                                                            \
    "if s ~= 'A' or ARGV[10] ~= '1' then return {4} end\n"                                                             \
    "touch(ARGV[9], s)\n"                                                                                              \
    "return {0}\n"

/* ARGV[8] user, ARGV[9] token, ARGV[10] "1" when only an ACTIVE token may end
 * (complete: the user paid), "0" for leave. Expires it, then admits the next. */
#define RS_END                                                                                                         \
    RS_PRELUDE                                                                                                         \
    "local code, s = resolve(ARGV[9], ARGV[8])\n"                                                                      \
    "if code ~= 0 then return {code} end\n"                                                                            \
    "if ARGV[10] == '1' and s ~= 'A' then return {4} end\n"                                                            \
    "expire(ARGV[9], ARGV[8], s)\n"                                                                                    \
    "admit_run()\n"                                                                                                    \
    "return {0}\n"

/* ARGV[8] batch (expiries per list per call), ARGV[9] ms after the last issue an
 * empty concert may be forgotten by the housekeeping. Expires idle tokens, admits,
 * folds the admissions since the last call into the measured rate (only while
 * somebody waits or was admitted: an idle concert keeps its last measurement).
 * Reply: the concert's figures. */
#define RS_TICK                                                                                                        \
    RS_PRELUDE                                                                                                         \
    "local batch = tonumber(ARGV[8])\n"                                                                                \
    "local function expire_idle(zkey, idle, s)\n"                                                                      \
    "  local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', fmt(NOW - idle), 'LIMIT', 0, batch)\n"                    \
    "  for _, tok in ipairs(old) do expire(tok, redis.call('HGET', PFX .. tok, 'u'), s) end\n"                         \
    "  return #old\n"                                                                                                  \
    "end\n"                                                                                                            \
    "local full = 0\n"                                                                                                 \
    "if expire_idle(K_WL, WAIT_IDLE, 'W') >= batch then full = 1 end\n"                                                \
    "if expire_idle(K_AL, ACT_IDLE, 'A') >= batch then full = 1 end\n"                                                 \
    "if redis.call('EXISTS', K_ST) == 0 then return figures(full, 0) end\n"                                            \
    "admit_run()\n"                                                                                                    \
    "local st = redis.call('HMGET', K_ST, 'rate', 'rate_at', 'admitted_since', 'issued_at', 'rate_w')\n"               \
    "local waiting, rate_at = redis.call('ZCARD', K_WQ), num(st[2])\n"                                                 \
    "if NOW > rate_at then\n"                                                                                          \
    "  local since = num(st[3])\n"                                                                                     \
    "  if since > 0 or waiting > 0 then\n"                                                                             \
    "    local r, w = rate_update(num(st[1]), num(st[5]), since, NOW - rate_at)\n"                                     \
    "    redis.call('HSET', K_ST, 'rate', fmt(r), 'rate_w', fmt(w))\n"                                                 \
    "  end\n"                                                                                                          \
    "  redis.call('HSET', K_ST, 'admitted_since', 0, 'rate_at', NOW_S)\n"                                              \
    "end\n"                                                                                                            \
    "local forget = 0\n"                                                                                               \
    "if waiting == 0 and redis.call('ZCARD', K_AL) == 0 and NOW - num(st[4]) >= tonumber(ARGV[9]) then forget = 1 "    \
    "end\n"                                                                                                            \
    "return figures(full, forget)\n"

/* The write-back of polls answered without Redis (redis_view.h): ARGV[8..] pairs of
 * token and the time it was last polled. Moves each token's idle clock forward to
 * that time (never back) if it still waits. Reply {0, the tokens that no longer
 * wait (admitted, left, expired)...}. */
#define RS_TOUCH                                                                                                       \
    RS_PRELUDE                                                                                                         \
    "local gone = {0}\n"                                                                                               \
    "for i = 8, #ARGV - 1, 2 do\n"                                                                                     \
    "  if redis.call('ZSCORE', K_WL, ARGV[i]) then redis.call('ZADD', K_WL, 'XX', 'GT', ARGV[i + 1], ARGV[i])\n"       \
    "  else gone[#gone + 1] = ARGV[i] end\n"                                                                           \
    "end\n"                                                                                                            \
    "return gone\n"

/* Reads the concert's figures, changing nothing (a view refresh). */
#define RS_FIGURES                                                                                                     \
    RS_PRELUDE                                                                                                         \
    "return figures(0, 0)\n"

#endif
