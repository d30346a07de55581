/* redis_scripts.h — the Lua library of the Redis waiting room (waitroom_redis.c): one
 * Redis Functions library (Redis 7: FUNCTION LOAD once, FCALL per operation), so its
 * helpers are compiled once per server, not on every call. Each operation on one
 * concert is one function, run atomically by the Redis server: however many
 * boxoffice instances call them at once, no token is admitted twice and a concert
 * never has more than active_max ACTIVE tokens. Private to waitroom_redis.c; the
 * key and argument layout below is its contract.
 *
 * The library is RS_LIBRARY preceded by two lines waitroom_redis.c writes,
 *   #!lua name=bx_<H>
 *   local V = 'bx_<H>_'
 * where H is a hash of RS_LIBRARY: the functions are V..'issue' and so on, so
 * instances of different versions (a rolling upgrade) each call their own code on
 * the same keys. Keep every change compatible with the keys as older versions
 * write and read them.
 *
 * Every function touches only keys of one concert, all carrying the hash tag {NS:C}
 * (one Redis Cluster slot), named by the prefix PFX = "{NS:C}:" (ARGV[1]):
 *   PFX..seq      STRING  issue counter (INCR): the FIFO sequence number
 *   PFX..wq       ZSET    WAITING tokens scored by seq   (ZRANK = position - 1)
 *   PFX..wl       ZSET    WAITING tokens scored by last_seen (idle expiry)
 *   PFX..al       ZSET    ACTIVE tokens scored by last_seen (ZCARD = active)
 *   PFX..users    HASH    user id -> live token (re-issue)
 *   PFX..st       HASH    budget, refill_at, rate, rate_w, rate_at, admitted_total,
 *                         admitted_since, departed_total (WAITING tokens that left
 *                         or expired), issued_at and issued_seq (below), and the
 *                         line's pace for the estimated wait: pace, pace_w, pace_at
 *                         (last promotion, or when the line formed), pace_n
 *   PFX..t:TOK    HASH    one token: u user, s W|A|E, q seq, i issued_at,
 *                         a activated_at, e expired_at; TTL once EXPIRED
 * Each call declares one key, KEYS[1], of that slot (the token's hash, or st, or
 * wl), which is what Redis Cluster routes by; the function derives the others from
 * PFX, all in the same slot. Arguments cost (each is made a Lua string), so a call
 * passes only what its function reads: ARGV[1] PFX, [2] now (ms, from the caller:
 * the functions never read the server clock), then its own, among them, for the
 * functions that admit or expire, the configuration in one argument,
 * "active_max admit_rate waiting_idle_ms active_idle_ms expired_ttl_s" (parsed once
 * while it stays the same).
 *
 * Replies: a code, an integer: 0 ok, 1 unknown token, 2 another user's, 3 expired,
 * 4 not active, 5 token already exists (issue: draw another); or a string, as
 * tables are costly to return. A ticket is "A" (ACTIVE) or "W position pace pace_at
 * admitted_total departed_total" (pace as "%.17g"): the counters read with the
 * position let the caller estimate the position later without a round trip
 * (redis_view.h). ETA and pollAfterMs are computed by the caller with
 * domain/queue_rules.c. The concert's figures, as the tick and the view refresh
 * reply them (a table: rare calls), are {waiting, active, 1 when an expiry batch
 * was full, 1 when the concert may be forgotten, admitted_total, departed_total,
 * rate, pace, pace_at}.
 *
 * What a call costs the server is mostly its redis.call()s (a few thousand
 * instructions each, on top of the FCALL, whatever the command), its arguments, and
 * the tables it builds or returns; so each function makes as few calls as it can:
 * the concert's hash st is read with one HMGET and written with one HSET, sets are
 * changed with one variadic command per batch, and an issue runs admission only
 * when its token can be admitted at once (nobody waits: it would be first in line).
 * Admission otherwise happens when a slot frees (end) or in the tick, every 100 ms,
 * in FIFO order.
 *
 * The last issue's time (the housekeeping forgets a concert empty for an hour after
 * it): an issue into an empty line writes st.issued_at and issued_seq (it writes st
 * anyway); an issue behind others writes nothing, and the next tick, seeing seq
 * past issued_seq, sets issued_at to its own now. So issued_at trails the last
 * issue by at most a tick (a tick already under way when the issue ran may stamp
 * its start, a few milliseconds before it).
 *
 * rate_update(), pace_update() and admissible() mirror queue_rate_update(),
 * queue_pace_update() and queue_admissible() of domain/queue_rules.c operation for
 * operation (both are IEEE doubles; the unit tests compare the results with the C
 * functions). Keep them in step. */
#ifndef BX_QUEUE_REDIS_SCRIPTS_H
#define BX_QUEUE_REDIS_SCRIPTS_H

/* The library's functions (names after V), in waitroom_redis.c's enum order. The
 * per-function contracts are the comments above each in the Lua below. */
#define RS_LIBRARY                                                                                                     \
    "local function num(x) return tonumber(x) or 0 end\n"                                                              \
    "local function fmt(x) return string.format('%.17g', x) end\n"                                                     \
    "local function finite(x) return x == x and x ~= math.huge and x ~= -math.huge end\n"                              \
    "-- The call in progress (Redis runs one function at a time), set by begin(): the\n"                               \
    "-- concert's key prefix, now as given; now as a number and the configuration are\n"                               \
    "-- parsed only by the calls that need them (now(), config()).\n"                                                  \
    "-- The configuration stays parsed while callers pass the same one.\n"                                             \
    "local PFX, NOW_S, NOW, CFG\n"                                                                                     \
    "local PARSED, ACTIVE_MAX, ADMIT_RATE, WAIT_IDLE, ACT_IDLE, TTL\n"                                                 \
    "local function begin(args, cfg)\n"                                                                                \
    "  PFX, NOW_S, NOW, CFG = args[1], args[2], nil, cfg\n"                                                            \
    "end\n"                                                                                                            \
    "local function now()\n"                                                                                           \
    "  if not NOW then NOW = tonumber(NOW_S) end\n"                                                                    \
    "  return NOW\n"                                                                                                   \
    "end\n"                                                                                                            \
    "local function config()\n"                                                                                        \
    "  if CFG == PARSED then return end\n"                                                                             \
    "  local a, r, w, i, t = string.match(CFG, '^(%S+) (%S+) (%S+) (%S+) (%S+)$')\n"                                   \
    "  ACTIVE_MAX, ADMIT_RATE, WAIT_IDLE, ACT_IDLE, TTL = tonumber(a), tonumber(r), tonumber(w), tonumber(i), t\n"     \
    "  PARSED = CFG\n"                                                                                                 \
    "end\n"                                                                                                            \
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
    "-- queue_pace_update(): the configured rate, counted as one second measured,\n"                                   \
    "-- when there is no history; then rate_update()\n"                                                                \
    "local function pace_update(rate, w, n, elapsed)\n"                                                                \
    "  if not (w > 0 and w <= 1) or not (rate >= 0) or not finite(rate) then\n"                                        \
    "    rate = 0\n"                                                                                                   \
    "    if ADMIT_RATE > 0 and finite(ADMIT_RATE) then rate = ADMIT_RATE\n"                                            \
    "    elseif ACTIVE_MAX > 0 and ACT_IDLE > 0 then rate = ACTIVE_MAX * 1000.0 / ACT_IDLE end\n"                      \
    "    w = 0\n"                                                                                                      \
    "    if rate > 0 then w = 1.0 - math.exp(-1000.0 / 10000.0) end\n"                                                 \
    "  end\n"                                                                                                          \
    "  return rate_update(rate, w, n, elapsed)\n"                                                                      \
    "end\n"                                                                                                            \
    "-- cmd key list[...], in chunks when the list is long (unpack has a bounded\n"                                    \
    "-- stack); the replies that are arrays, concatenated.\n"                                                          \
    "local function chunked(cmd, key, list)\n"                                                                         \
    "  if #list <= 1000 then return redis.call(cmd, key, unpack(list)) end\n"                                          \
    "  local out = {}\n"                                                                                               \
    "  for i = 1, #list, 1000 do\n"                                                                                    \
    "    local r = redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))\n"                                  \
    "    if type(r) == 'table' then for _, x in ipairs(r) do out[#out + 1] = x end end\n"                              \
    "  end\n"                                                                                                          \
    "  return out\n"                                                                                                   \
    "end\n"                                                                                                            \
    "-- The concert's hash st: the named fields, numbers but rate and pace (as stored,\n"                              \
    "-- '0' when absent) and issued_seq (a string or false), and whether it exists.\n"                                 \
    "local function st_read(fields)\n"                                                                                 \
    "  local v = redis.call('HMGET', PFX .. 'st', unpack(fields))\n"                                                   \
    "  local st = {present = false, budget = 0, refill_at = 0, rate = '0', rate_w = 0, rate_at = 0, admitted_total = " \
    "0,\n"                                                                                                             \
    "              admitted_since = 0, departed_total = 0, issued_at = 0, issued_seq = false, refilled = false,\n"     \
    "              spent = false, pace = '0', pace_w = 0, pace_at = 0, pace_n = 0, paced = false}\n"                   \
    "  for i, f in ipairs(fields) do\n"                                                                                \
    "    local x = v[i]\n"                                                                                             \
    "    if x then\n"                                                                                                  \
    "      st.present = true\n"                                                                                        \
    "      if f == 'rate' or f == 'pace' or f == 'issued_seq' then st[f] = x else st[f] = num(x) end\n"                \
    "    end\n"                                                                                                        \
    "  end\n"                                                                                                          \
    "  return st\n"                                                                                                    \
    "end\n"                                                                                                            \
    "-- A new concert's st (the bucket starts full); the fields only it writes\n"                                      \
    "-- (admit_fields() adds the others).\n"                                                                           \
    "local function st_init(st)\n"                                                                                     \
    "  st.budget = 1\n"                                                                                                \
    "  if ADMIT_RATE > 1 then st.budget = ADMIT_RATE end\n"                                                            \
    "  st.refill_at, st.rate_at, st.rate, st.rate_w = now(), now(), '0', 0\n"                                          \
    "  st.admitted_total, st.admitted_since, st.departed_total = 0, 0, 0\n"                                            \
    "  st.pace, st.pace_w, st.pace_at, st.pace_n = '0', 0, now(), 0\n"                                                 \
    "  st.refilled, st.spent, st.paced = true, true, true\n"                                                           \
    "  return {'rate_at', NOW_S, 'rate', '0', 'rate_w', '0', 'departed_total', 0}\n"                                   \
    "end\n"                                                                                                            \
    "-- Appends to f what admission changed in st (budget and refill_at as the caller\n"                               \
    "-- has them unless refill() changed them), and returns f.\n"                                                      \
    "local function admit_fields(st, f)\n"                                                                             \
    "  if st.refilled then f[#f + 1] = 'refill_at'; f[#f + 1] = NOW_S end\n"                                           \
    "  if st.spent then f[#f + 1] = 'budget'; f[#f + 1] = fmt(st.budget) end\n"                                        \
    "  f[#f + 1] = 'admitted_total'; f[#f + 1] = st.admitted_total\n"                                                  \
    "  f[#f + 1] = 'admitted_since'; f[#f + 1] = st.admitted_since\n"                                                  \
    "  if st.paced then\n"                                                                                             \
    "    f[#f + 1] = 'pace'; f[#f + 1] = st.pace; f[#f + 1] = 'pace_w'; f[#f + 1] = fmt(st.pace_w)\n"                  \
    "    f[#f + 1] = 'pace_at'; f[#f + 1] = fmt(st.pace_at); f[#f + 1] = 'pace_n'; f[#f + 1] = st.pace_n\n"            \
    "  end\n"                                                                                                          \
    "  return f\n"                                                                                                     \
    "end\n"                                                                                                            \
    "-- Refills the admit_rate budget up to now; returns how many may be admitted.\n"                                  \
    "-- (Without admit_rate the budget stays as it is.)\n"                                                             \
    "local function refill(st, active)\n"                                                                              \
    "  local elapsed = 0\n"                                                                                            \
    "  if now() > st.refill_at then\n"                                                                                 \
    "    elapsed = NOW - st.refill_at; st.refill_at = NOW; st.refilled = true\n"                                       \
    "  end\n"                                                                                                          \
    "  local n, b = admissible(active, st.budget, elapsed)\n"                                                          \
    "  if b ~= st.budget then st.budget = b; st.spent = true end\n"                                                    \
    "  return n\n"                                                                                                     \
    "end\n"                                                                                                            \
    "-- Admits the oldest WAITING tokens into free slots within the admit_rate budget,\n"                              \
    "-- given the counts the caller read; changes st (budget, refill_at,\n"                                            \
    "-- admitted_total, admitted_since, and the pace as queue_pace_update() folds the\n"                               \
    "-- promotions: pace, pace_w, pace_at, pace_n), which the caller writes. Returns\n"                                \
    "-- the count.\n"                                                                                                  \
    "local function admit_run(st, active, waiting)\n"                                                                  \
    "  local n = refill(st, active)\n"                                                                                 \
    "  if n > waiting then n = waiting end\n"                                                                          \
    "  if n == 1 then\n"                                                                                               \
    "    local tok = redis.call('ZPOPMIN', PFX .. 'wq')[1]\n"                                                          \
    "    redis.call('HSET', PFX .. 't:' .. tok, 's', 'A', 'a', NOW_S)\n"                                               \
    "    redis.call('ZREM', PFX .. 'wl', tok)\n"                                                                       \
    "    redis.call('ZADD', PFX .. 'al', NOW_S, tok)\n"                                                                \
    "  elseif n > 1 then\n"                                                                                            \
    "    local popped = redis.call('ZPOPMIN', PFX .. 'wq', n)\n"                                                       \
    "    local toks, scored = {}, {}\n"                                                                                \
    "    for i = 1, #popped, 2 do\n"                                                                                   \
    "      local tok = popped[i]\n"                                                                                    \
    "      toks[#toks + 1] = tok\n"                                                                                    \
    "      scored[#scored + 1] = NOW_S; scored[#scored + 1] = tok\n"                                                   \
    "      redis.call('HSET', PFX .. 't:' .. tok, 's', 'A', 'a', NOW_S)\n"                                             \
    "    end\n"                                                                                                        \
    "    chunked('ZREM', PFX .. 'wl', toks)\n"                                                                         \
    "    chunked('ZADD', PFX .. 'al', scored)\n"                                                                       \
    "  end\n"                                                                                                          \
    "  if n > 0 then\n"                                                                                                \
    "    if ADMIT_RATE > 0 then st.budget = st.budget - n; st.spent = true end\n"                                      \
    "    st.admitted_total = st.admitted_total + n\n"                                                                  \
    "    st.admitted_since = st.admitted_since + n\n"                                                                  \
    "    st.pace_n, st.paced = st.pace_n + n, true\n"                                                                  \
    "    if NOW > st.pace_at then\n"                                                                                   \
    "      local r, w = pace_update(num(st.pace), st.pace_w, st.pace_n, NOW - st.pace_at)\n"                           \
    "      st.pace, st.pace_w, st.pace_at, st.pace_n = fmt(r), w, NOW, 0\n"                                            \
    "    end\n"                                                                                                        \
    "  end\n"                                                                                                          \
    "  return n\n"                                                                                                     \
    "end\n"                                                                                                            \
    "-- Live tokens become EXPIRED: out of their sets (toks all WAITING, s 'W', or all\n"                              \
    "-- ACTIVE), remembered for TTL seconds; users[i] is toks[i]'s user (or false),\n"                                 \
    "-- who loses it as live token. st.departed_total counts the WAITING ones.\n"                                      \
    "local function expire(st, toks, users, s)\n"                                                                      \
    "  if s == 'W' then\n"                                                                                             \
    "    chunked('ZREM', PFX .. 'wq', toks); chunked('ZREM', PFX .. 'wl', toks)\n"                                     \
    "    st.departed_total = st.departed_total + #toks\n"                                                              \
    "  else chunked('ZREM', PFX .. 'al', toks) end\n"                                                                  \
    "  local names, owned = {}, {}\n"                                                                                  \
    "  for i, tok in ipairs(toks) do\n"                                                                                \
    "    redis.call('HSET', PFX .. 't:' .. tok, 's', 'E', 'e', NOW_S)\n"                                               \
    "    redis.call('EXPIRE', PFX .. 't:' .. tok, TTL)\n"                                                              \
    "    if users[i] then names[#names + 1] = users[i]; owned[#owned + 1] = tok end\n"                                 \
    "  end\n"                                                                                                          \
    "  if #names == 0 then return end\n"                                                                               \
    "  local cur, gone = chunked('HMGET', PFX .. 'users', names), {}\n"                                                \
    "  for i, u in ipairs(names) do if cur[i] == owned[i] then gone[#gone + 1] = u end end\n"                          \
    "  if #gone > 0 then chunked('HDEL', PFX .. 'users', gone) end\n"                                                  \
    "end\n"                                                                                                            \
    "-- One live token becomes EXPIRED (as expire() does it for many).\n"                                              \
    "local function expire_one(st, tok, user, s)\n"                                                                    \
    "  if s == 'W' then\n"                                                                                             \
    "    redis.call('ZREM', PFX .. 'wq', tok); redis.call('ZREM', PFX .. 'wl', tok)\n"                                 \
    "    st.departed_total = st.departed_total + 1\n"                                                                  \
    "  else redis.call('ZREM', PFX .. 'al', tok) end\n"                                                                \
    "  local key = PFX .. 't:' .. tok\n"                                                                               \
    "  redis.call('HSET', key, 's', 'E', 'e', NOW_S)\n"                                                                \
    "  redis.call('EXPIRE', key, TTL)\n"                                                                               \
    "  if redis.call('HGET', PFX .. 'users', user) == tok then redis.call('HDEL', PFX .. 'users', user) end\n"         \
    "end\n"                                                                                                            \
    "-- 0 and the status of the user's live token (its hash at key), or an error code.\n"                              \
    "local function resolve(key, user)\n"                                                                              \
    "  local h = redis.call('HMGET', key, 'u', 's')\n"                                                                 \
    "  if not h[1] then return 1 end\n"                                                                                \
    "  if h[1] ~= user then return 2 end\n"                                                                            \
    "  if h[2] ~= 'W' and h[2] ~= 'A' then return 3 end\n"                                                             \
    "  return 0, h[2]\n"                                                                                               \
    "end\n"                                                                                                            \
    "local function touch(tok, s)\n"                                                                                   \
    "  if s == 'A' then redis.call('ZADD', PFX .. 'al', NOW_S, tok) else redis.call('ZADD', PFX .. 'wl', NOW_S, tok) " \
    "end\n"                                                                                                            \
    "end\n"                                                                                                            \
    "-- A ticket: \"A\", or \"W position pace pace_at admitted_total departed_total\".\n"                              \
    "local function ticket(tok, s)\n"                                                                                  \
    "  if s == 'A' then return 'A' end\n"                                                                              \
    "  local pos = redis.call('ZRANK', PFX .. 'wq', tok) + 1\n"                                                        \
    "  local v = redis.call('HMGET', PFX .. 'st', 'pace', 'pace_at', 'admitted_total', 'departed_total')\n"            \
    "  return 'W ' .. pos .. ' ' .. (v[1] or '0') .. ' ' .. (v[2] or '0') .. ' ' .. (v[3] or '0') .. ' ' .. (v[4] or " \
    "'0')\n"                                                                                                           \
    "end\n"                                                                                                            \
    "\n"                                                                                                               \
    "-- issue: KEYS[1] the fresh token's hash; ARGV[3] configuration, [4] user, [5] the\n"                             \
    "-- fresh token. Returns the user's live token, touched, or creates the new one:\n"                                \
    "-- ACTIVE at once when nobody waits and admission allows one more (as admit_run\n"                                \
    "-- would admit it), else WAITING at the back (position: the line before it, plus\n"                               \
    "-- one; seq only grows). Reply \"C E TOKEN TICKET\": C 1 when created (0:\n"                                      \
    "-- re-issued), E 1 when the concert had no live token before (the caller then\n"                                  \
    "-- names it in the tick set); or 5 when the fresh token exists (draw another).\n"                                 \
    "local function issue(keys, args)\n"                                                                               \
    "  begin(args, args[3])\n"                                                                                         \
    "  local user, tok = args[4], args[5]\n"                                                                           \
    "  local cur = redis.call('HGET', PFX .. 'users', user)\n"                                                         \
    "  if cur then\n"                                                                                                  \
    "    local s = redis.call('HGET', PFX .. 't:' .. cur, 's')\n"                                                      \
    "    if s == 'W' or s == 'A' then\n"                                                                               \
    "      touch(cur, s)\n"                                                                                            \
    "      return '0 0 ' .. cur .. ' ' .. ticket(cur, s)\n"                                                            \
    "    end\n"                                                                                                        \
    "    redis.call('HDEL', PFX .. 'users', user)\n"                                                                   \
    "  end\n"                                                                                                          \
    "  if redis.call('EXISTS', keys[1]) == 1 then return 5 end\n"                                                      \
    "  local waiting = redis.call('ZCARD', PFX .. 'wq')\n"                                                             \
    "  local seq = redis.call('INCR', PFX .. 'seq')\n"                                                                 \
    "  local s, empty, pace, pat, at, dt = 'W', 0\n"                                                                   \
    "  local v\n"                                                                                                      \
    "  if waiting > 0 then v = redis.call('HMGET', PFX .. 'st', 'pace', 'pace_at', 'admitted_total', "                 \
    "'departed_total') end\n"                                                                                          \
    "  if v and v[2] then\n"                                                                                           \
    "    pace, pat, at, dt = v[1] or '0', v[2], v[3] or '0', v[4] or '0'\n"                                            \
    "  else\n"                                                                                                         \
    "    -- nobody waits (admission: as admit_run would, for this one token), or a new\n"                              \
    "    -- concert: st is read and written, and the issue time is exact\n"                                            \
    "    config()\n"                                                                                                   \
    "    local st = st_read({'budget', 'refill_at', 'admitted_total', 'admitted_since', 'departed_total', 'pace',\n"   \
    "                        'pace_at', 'pace_n'})\n"                                                                  \
    "    local f = {'issued_at', NOW_S, 'issued_seq', seq}\n"                                                          \
    "    if not st.present then f = st_init(st); f[#f + 1] = 'issued_at'; f[#f + 1] = NOW_S end\n"                     \
    "    if waiting == 0 then\n"                                                                                       \
    "      local active = redis.call('ZCARD', PFX .. 'al')\n"                                                          \
    "      if active == 0 then empty = 1 end\n"                                                                        \
    "      if refill(st, active) > 0 then\n"                                                                           \
    "        s = 'A'\n"                                                                                                \
    "        if ADMIT_RATE > 0 then st.budget = st.budget - 1; st.spent = true end\n"                                  \
    "        st.admitted_total = st.admitted_total + 1\n"                                                              \
    "        st.admitted_since = st.admitted_since + 1\n"                                                              \
    "      end\n"                                                                                                      \
    "    end\n"                                                                                                        \
    "    if not st.present then f[#f + 1] = 'issued_seq'; f[#f + 1] = seq end\n"                                       \
    "    -- a token that waits where nobody did: the line forms now, the estimate\n"                                   \
    "    -- projects from here (unless promotions wait to be folded)\n"                                                \
    "    if s == 'W' and (st.pace_at == 0 or (waiting == 0 and st.pace_n == 0 and now() > st.pace_at)) then\n"         \
    "      st.pace_at = now(); f[#f + 1] = 'pace_at'; f[#f + 1] = NOW_S\n"                                             \
    "    end\n"                                                                                                        \
    "    redis.call('HSET', PFX .. 'st', unpack(admit_fields(st, f)))\n"                                               \
    "    pace, pat, at, dt = st.pace, fmt(st.pace_at), st.admitted_total, st.departed_total\n"                         \
    "  end\n"                                                                                                          \
    "  redis.call('HSET', PFX .. 'users', user, tok)\n"                                                                \
    "  if s == 'A' then\n"                                                                                             \
    "    redis.call('HSET', keys[1], 'u', user, 's', 'A', 'q', seq, 'i', NOW_S, 'a', NOW_S)\n"                         \
    "    redis.call('ZADD', PFX .. 'al', NOW_S, tok)\n"                                                                \
    "    return '1 ' .. empty .. ' ' .. tok .. ' A'\n"                                                                 \
    "  end\n"                                                                                                          \
    "  redis.call('HSET', keys[1], 'u', user, 's', 'W', 'q', seq, 'i', NOW_S)\n"                                       \
    "  redis.call('ZADD', PFX .. 'wq', seq, tok)\n"                                                                    \
    "  redis.call('ZADD', PFX .. 'wl', NOW_S, tok)\n"                                                                  \
    "  return '1 ' .. empty .. ' ' .. tok .. ' W ' .. (waiting + 1) .. ' ' .. pace .. ' ' .. pat .. ' ' .. at .. ' ' " \
    ".. dt\n"                                                                                                          \
    "end\n"                                                                                                            \
    "\n"                                                                                                               \
    "-- status: KEYS[1] the token's hash; ARGV[3] user, [4] token. Touches a live\n"                                   \
    "-- token; reply: a ticket, or an error code.\n"                                                                   \
    "local function status(keys, args)\n"                                                                              \
    "  begin(args)\n"                                                                                                  \
    "  local code, s = resolve(keys[1], args[3])\n"                                                                    \
    "  if code ~= 0 then return code end\n"                                                                            \
    "  touch(args[4], s)\n"                                                                                            \
    "  return ticket(args[4], s)\n"                                                                                    \
    "end\n"                                                                                                            \
    "\n"                                                                                                               \
    "-- require_active: KEYS[1] the token's hash; ARGV[3] user, [4] token, [5] \"1\" when\n"                           \
    "-- the token's concert is the one asked for. Touches the token only when it opens\n"                              \
    "-- the booking endpoints. Reply: a code.\n"                                                                       \
    "local function require_active(keys, args)\n"                                                                      \
    "  begin(args)\n"                                                                                                  \
    "  local code, s = resolve(keys[1], args[3])\n"                                                                    \
    "  if code ~= 0 then return code end\n"                                                                            \
    "  if s ~= 'A' or args[5] ~= '1' then return 4 end\n"                                                              \
    "  touch(args[4], s)\n"                                                                                            \
    "  return 0\n"                                                                                                     \
    "end\n"                                                                                                            \
    "\n"                                                                                                               \
    "-- end: KEYS[1] the token's hash; ARGV[3] configuration, [4] user, [5] token, [6]\n"                              \
    "-- \"1\" when only an ACTIVE token may end (complete: the user paid), \"0\" for leave.\n"                         \
    "-- Expires it, then admits the next. Reply: a code.\n"                                                            \
    "local function finish(keys, args)\n"                                                                              \
    "  begin(args, args[3])\n"                                                                                         \
    "  local code, s = resolve(keys[1], args[4])\n"                                                                    \
    "  if code ~= 0 then return code end\n"                                                                            \
    "  if args[6] == '1' and s ~= 'A' then return 4 end\n"                                                             \
    "  config()\n"                                                                                                     \
    "  local st = st_read({'budget', 'refill_at', 'admitted_total', 'admitted_since', 'departed_total', 'pace', "      \
    "'pace_w',\n"                                                                                                      \
    "                      'pace_at', 'pace_n'})\n"                                                                    \
    "  expire_one(st, args[5], args[4], s)\n"                                                                          \
    "  admit_run(st, redis.call('ZCARD', PFX .. 'al'), redis.call('ZCARD', PFX .. 'wq'))\n"                            \
    "  local f = {}\n"                                                                                                 \
    "  if s == 'W' then f = {'departed_total', st.departed_total} end\n"                                               \
    "  redis.call('HSET', PFX .. 'st', unpack(admit_fields(st, f)))\n"                                                 \
    "  return 0\n"                                                                                                     \
    "end\n"                                                                                                            \
    "\n"                                                                                                               \
    "local function figures(st, waiting, active, full, forget)\n"                                                      \
    "  return {waiting, active, full, forget, st.admitted_total, st.departed_total, st.rate, st.pace, st.pace_at}\n"   \
    "end\n"                                                                                                            \
    "\n"                                                                                                               \
    "local ST_ALL = {'budget', 'refill_at', 'rate', 'rate_w', 'rate_at', 'admitted_total', 'admitted_since',\n"        \
    "                'departed_total', 'issued_at', 'issued_seq', 'pace', 'pace_w', 'pace_at', 'pace_n'}\n"            \
    "-- tick: KEYS[1] the concert's st; ARGV[3] configuration, [4] batch (expiries per\n"                              \
    "-- list per call), [5] ms after the last issue an empty concert may be forgotten.\n"                              \
    "-- Expires idle tokens, admits, folds the admissions since the last call into the\n"                              \
    "-- measured rate (only while somebody waits or was admitted: an idle concert keeps\n"                             \
    "-- its last rate), keeps issued_at. Reply: the figures.\n"                                                        \
    "local function tick(keys, args)\n"                                                                                \
    "  begin(args, args[3])\n"                                                                                         \
    "  config()\n"                                                                                                     \
    "  now()\n"                                                                                                        \
    "  local batch = tonumber(args[4])\n"                                                                              \
    "  local st = st_read(ST_ALL)\n"                                                                                   \
    "  local departed, full = st.departed_total, 0\n"                                                                  \
    "  local function expire_idle(zkey, idle, s)\n"                                                                    \
    "    local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', fmt(now() - idle), 'LIMIT', 0, batch)\n"                \
    "    if #old == 0 then return end\n"                                                                               \
    "    local users = {}\n"                                                                                           \
    "    for i, tok in ipairs(old) do users[i] = redis.call('HGET', PFX .. 't:' .. tok, 'u') end\n"                    \
    "    expire(st, old, users, s)\n"                                                                                  \
    "    if #old >= batch then full = 1 end\n"                                                                         \
    "  end\n"                                                                                                          \
    "  expire_idle(PFX .. 'wl', WAIT_IDLE, 'W')\n"                                                                     \
    "  expire_idle(PFX .. 'al', ACT_IDLE, 'A')\n"                                                                      \
    "  local waiting, active = redis.call('ZCARD', PFX .. 'wq'), redis.call('ZCARD', PFX .. 'al')\n"                   \
    "  if not st.present and st.departed_total == departed then return figures(st, waiting, active, full, 0) end\n"    \
    "  local n = admit_run(st, active, waiting)\n"                                                                     \
    "  waiting, active = waiting - n, active + n\n"                                                                    \
    "  local f = {}\n"                                                                                                 \
    "  if st.departed_total ~= departed then f = {'departed_total', st.departed_total} end\n"                          \
    "  if NOW > st.rate_at then\n"                                                                                     \
    "    if st.admitted_since > 0 or waiting > 0 then\n"                                                               \
    "      local r, w = rate_update(num(st.rate), st.rate_w, st.admitted_since, NOW - st.rate_at)\n"                   \
    "      st.rate = fmt(r)\n"                                                                                         \
    "      f[#f + 1] = 'rate'; f[#f + 1] = st.rate; f[#f + 1] = 'rate_w'; f[#f + 1] = fmt(w)\n"                        \
    "    end\n"                                                                                                        \
    "    st.admitted_since = 0\n"                                                                                      \
    "    f[#f + 1] = 'rate_at'; f[#f + 1] = NOW_S\n"                                                                   \
    "  end\n"                                                                                                          \
    "  -- an issue behind others does not write issued_at: the first tick after it does\n"                             \
    "  local seq = redis.call('GET', PFX .. 'seq')\n"                                                                  \
    "  if seq and seq ~= st.issued_seq then\n"                                                                         \
    "    st.issued_at = NOW\n"                                                                                         \
    "    f[#f + 1] = 'issued_at'; f[#f + 1] = NOW_S; f[#f + 1] = 'issued_seq'; f[#f + 1] = seq\n"                      \
    "  end\n"                                                                                                          \
    "  redis.call('HSET', PFX .. 'st', unpack(admit_fields(st, f)))\n"                                                 \
    "  local forget = 0\n"                                                                                             \
    "  if waiting == 0 and active == 0 and NOW - st.issued_at >= tonumber(args[5]) then forget = 1 end\n"              \
    "  return figures(st, waiting, active, full, forget)\n"                                                            \
    "end\n"                                                                                                            \
    "\n"                                                                                                               \
    "-- touch: the write-back of polls answered without Redis (redis_view.h): KEYS[1]\n"                               \
    "-- the concert's wl; ARGV[3..] pairs of token and the time it was last polled.\n"                                 \
    "-- Moves each token's idle clock forward to that time (never back) if it still\n"                                 \
    "-- waits. Reply {0, the tokens that no longer wait (admitted, left, expired)...}.\n"                              \
    "local function touch_polled(keys, args)\n"                                                                        \
    "  local toks = {}\n"                                                                                              \
    "  for i = 3, #args - 1, 2 do toks[#toks + 1] = args[i] end\n"                                                     \
    "  local gone, scored = {0}, {}\n"                                                                                 \
    "  if #toks == 0 then return gone end\n"                                                                           \
    "  local scores = chunked('ZMSCORE', keys[1], toks)\n"                                                             \
    "  for j, tok in ipairs(toks) do\n"                                                                                \
    "    if scores[j] then scored[#scored + 1] = args[2 + 2 * j]; scored[#scored + 1] = tok\n"                         \
    "    else gone[#gone + 1] = tok end\n"                                                                             \
    "  end\n"                                                                                                          \
    "  for i = 1, #scored, 1000 do\n"                                                                                  \
    "    redis.call('ZADD', keys[1], 'XX', 'GT', unpack(scored, i, math.min(i + 999, #scored)))\n"                     \
    "  end\n"                                                                                                          \
    "  return gone\n"                                                                                                  \
    "end\n"                                                                                                            \
    "\n"                                                                                                               \
    "-- figures: KEYS[1] the concert's st. The concert's figures, changing nothing (a\n"                               \
    "-- view refresh).\n"                                                                                              \
    "local function read_figures(keys, args)\n"                                                                        \
    "  begin(args)\n"                                                                                                  \
    "  local st = st_read({'admitted_total', 'departed_total', 'rate', 'pace', 'pace_at'})\n"                          \
    "  return figures(st, redis.call('ZCARD', PFX .. 'wq'), redis.call('ZCARD', PFX .. 'al'), 0, 0)\n"                 \
    "end\n"                                                                                                            \
    "\n"                                                                                                               \
    "redis.register_function(V .. 'issue', issue)\n"                                                                   \
    "redis.register_function(V .. 'status', status)\n"                                                                 \
    "redis.register_function(V .. 'require_active', require_active)\n"                                                 \
    "redis.register_function(V .. 'end', finish)\n"                                                                    \
    "redis.register_function(V .. 'tick', tick)\n"                                                                     \
    "redis.register_function(V .. 'touch', touch_polled)\n"                                                            \
    "redis.register_function{function_name = V .. 'figures', callback = read_figures, flags = {'no-writes'}}\n"

#endif
