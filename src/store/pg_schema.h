/* pg_schema.h — the PostgreSQL schema of boxoffice as numbered migrations,
 * included only by store_pg.c. Migrations are append-only: never edit one that
 * has shipped; add the next number instead. Times are BIGINT Unix ms, money
 * BIGINT won. The same tables and constraints as sqlite_schema.h, plus the
 * PL/pgSQL functions that make every multi-statement transaction of the store
 * one round trip (see the top of store_pg.c). */
#ifndef BX_STORE_PG_SCHEMA_H
#define BX_STORE_PG_SCHEMA_H

/* Key of the transaction-level advisory lock every migration run holds, so N
 * instances starting at once migrate exactly once ("boxoffi" in ASCII). */
#define PG_MIGRATION_LOCK_KEY "27707110773384809"

/* Run before the migrations, in the same transaction and under the lock. */
static const char pg_schema_bootstrap[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "  version integer PRIMARY KEY,"
    "  applied_at bigint NOT NULL)";

/* bx_write_batch as migrations 4 and 5 create it: the text they share (WB_*)
 * and what each has of its own (WB4_*, WB5_*; see migration 5). Migration 4's
 * text is byte for byte what it shipped as (tests/unit/test_store.c checks). */
#define WB_HEAD \
    "CREATE OR REPLACE FUNCTION bx_write_batch(p_kind text[], p_user bigint[], p_now bigint[], p_schedule bigint[], p_seat integer[],\n" \
    "    p_expires bigint[], p_max integer[], p_res bigint[], p_amount bigint[], p_concert bigint[], p_key text[],\n" \
    "    p_hash bytea[], p_balance_max bigint)\n" \
    "    RETURNS TABLE(o_code text, o_id bigint, o_concert bigint, o_price bigint, o_res bigint, o_amount bigint,\n" \
    "                  o_balance bigint, o_paid_at bigint, o_live_holds integer)\n" \
    "    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$\n" \
    "DECLARE\n" \
    "  n integer := coalesce(array_length(p_kind, 1), 0);\n" \
    "  v_user_ok boolean[]; v_seat_ok boolean[]; v_sets boolean;\n" \
    "  l_schedule bigint[]; l_seat integer[]; l_status text[]; l_res bigint[]; l_end bigint[];\n" \
    "  r_code text[]; r_id bigint[]; r_concert bigint[]; r_price bigint[]; r_res bigint[]; r_amount bigint[];\n" \
    "  r_balance bigint[]; r_paid_at bigint[];\n" \
    "  c_code text[]; c_id bigint[]; c_concert bigint[]; c_price bigint[]; c_res bigint[]; c_amount bigint[];\n" \
    "  c_balance bigint[]; c_paid_at bigint[];\n" \
    "  v_from integer := 1; v_to integer; v_next integer; v_rounds integer := 0;\n" \
    "  v_paid integer; v_sold integer; v_confirmed integer; v_debited integer;\n" \
    "  v_changes text[];\n" \
    "  v_code text; v_id bigint; v_concert bigint; v_price bigint; v_res bigint; v_amount bigint; v_balance bigint;\n" \
    "  v_paid_at bigint;\n" \
    "BEGIN\n" \
    "  IF n = 0 THEN RETURN; END IF;\n" \
    "  IF array_length(p_user, 1) IS DISTINCT FROM n OR array_length(p_now, 1) IS DISTINCT FROM n\n" \
    "     OR array_length(p_schedule, 1) IS DISTINCT FROM n OR array_length(p_seat, 1) IS DISTINCT FROM n\n" \
    "     OR array_length(p_expires, 1) IS DISTINCT FROM n OR array_length(p_max, 1) IS DISTINCT FROM n\n" \
    "     OR array_length(p_res, 1) IS DISTINCT FROM n OR array_length(p_amount, 1) IS DISTINCT FROM n\n" \
    "     OR array_length(p_concert, 1) IS DISTINCT FROM n OR array_length(p_key, 1) IS DISTINCT FROM n\n" \
    "     OR array_length(p_hash, 1) IS DISTINCT FROM n THEN\n" \
    "    RAISE EXCEPTION 'bx_write_batch: the input arrays differ in length (% kinds)', n;\n" \
    "  END IF;\n" \
    "\n" \
    "  -- Lock step 1: every user row of the batch, in id order; and whether every\n" \
    "  -- item has the inputs its kind needs (rounds assume it).\n" \
    "  WITH locked AS MATERIALIZED (\n" \
    "    SELECT u.id FROM users u WHERE u.id = ANY(p_user) ORDER BY u.id FOR NO KEY UPDATE\n" \
    "  )\n" \
    "  SELECT array_agg(l.id IS NOT NULL ORDER BY x.i),\n" \
    "         (SELECT coalesce(bool_and(y.kind IS NULL OR y.kind NOT IN ('HOLD', 'PAY', 'CANCEL', 'CHARGE')\n" \
    "                   OR (y.user_id IS NOT NULL AND y.now IS NOT NULL\n" \
    "                       AND CASE y.kind\n" \
    "                             WHEN 'HOLD' THEN y.schedule_id IS NOT NULL AND y.seat_no IS NOT NULL\n" \
    "                                              AND y.expires IS NOT NULL AND y.max_seats IS NOT NULL\n" \
    "                             WHEN 'CHARGE' THEN y.amount IS NOT NULL AND p_balance_max IS NOT NULL\n" \
    "                                                AND (y.key IS NULL) = (y.hash IS NULL)\n" \
    "                             WHEN 'PAY' THEN y.res IS NOT NULL AND (y.key IS NULL) = (y.hash IS NULL)\n" \
    "                             ELSE y.res IS NOT NULL END)), true)\n" \
    "            FROM unnest(p_kind, p_user, p_now, p_schedule, p_seat, p_expires, p_max, p_res, p_amount, p_key, p_hash)\n" \
    "                 AS y(kind, user_id, now, schedule_id, seat_no, expires, max_seats, res, amount, key, hash))\n" \
    "    INTO v_user_ok, v_sets\n" \
    "    FROM unnest(p_user) WITH ORDINALITY AS x(user_id, i) LEFT JOIN locked l ON l.id = x.user_id;\n" \
    "  IF n < 4 OR current_setting('boxoffice.write_batch_per_item', true) = 'on' THEN v_sets := false; END IF;\n" \
    "\n" \
    "  -- Lock step 2: every seat row the batch touches, in (schedule_id, seat_no) order.\n" \
    "  WITH want AS (\n" \
    "    SELECT x.i, x.schedule_id, x.seat_no\n" \
    "      FROM unnest(p_kind, p_schedule, p_seat) WITH ORDINALITY AS x(kind, schedule_id, seat_no, i)\n" \
    "      WHERE x.kind = 'HOLD'\n" \
    "    UNION ALL\n" \
    "    SELECT x.i, r.schedule_id, r.seat_no\n"

#define WB4_LOCK2_RESERVATIONS \
    "      FROM unnest(p_kind, p_res, p_user) WITH ORDINALITY AS x(kind, res, user_id, i)\n" \
    "      JOIN reservations r ON r.id = x.res AND r.user_id = x.user_id\n" \
    "      WHERE x.kind IN ('PAY', 'CANCEL')\n"

#define WB5_LOCK2_RESERVATIONS \
    "      FROM unnest(p_kind, p_res, p_user) WITH ORDINALITY AS x(kind, res, user_id, i)\n" \
    "      CROSS JOIN LATERAL (SELECT r.schedule_id, r.seat_no FROM reservations r\n" \
    "                           WHERE r.id = x.res AND r.user_id = x.user_id OFFSET 0) r\n" \
    "      WHERE x.kind IN ('PAY', 'CANCEL')\n"

#define WB_LOCK2_TO_ROUND \
    "  ), locked AS MATERIALIZED (\n" \
    "    SELECT t.schedule_id, t.seat_no, t.status, t.reservation_id, t.hold_expires_at\n" \
    "      FROM (SELECT DISTINCT w.schedule_id, w.seat_no FROM want w) k\n" \
    "      JOIN seats t ON t.schedule_id = k.schedule_id AND t.seat_no = k.seat_no\n" \
    "      ORDER BY t.schedule_id, t.seat_no FOR NO KEY UPDATE OF t\n" \
    "  )\n" \
    "  SELECT (SELECT array_agg(l.seat_no IS NOT NULL ORDER BY x.i)\n" \
    "            FROM generate_series(1, n) AS x(i) LEFT JOIN want w ON w.i = x.i\n" \
    "            LEFT JOIN locked l ON l.schedule_id = w.schedule_id AND l.seat_no = w.seat_no),\n" \
    "         array_agg(l.schedule_id ORDER BY l.schedule_id, l.seat_no),\n" \
    "         array_agg(l.seat_no ORDER BY l.schedule_id, l.seat_no),\n" \
    "         array_agg(l.status ORDER BY l.schedule_id, l.seat_no),\n" \
    "         array_agg(l.reservation_id ORDER BY l.schedule_id, l.seat_no),\n" \
    "         array_agg(l.hold_expires_at ORDER BY l.schedule_id, l.seat_no)\n" \
    "    INTO v_seat_ok, l_schedule, l_seat, l_status, l_res, l_end\n" \
    "    FROM locked l;\n" \
    "\n" \
    "  WHILE v_from <= n LOOP\n" \
    "    -- A round stops before the first user met again: fewer than 4 items before it, items one by one.\n" \
    "    IF v_sets THEN\n" \
    "      SELECT coalesce(min(y.i), n - v_from + 2) INTO v_next\n" \
    "        FROM (SELECT x.i, row_number() OVER (PARTITION BY x.user_id ORDER BY x.i) AS nth\n" \
    "                FROM unnest(p_user[v_from:n]) WITH ORDINALITY AS x(user_id, i)) y\n" \
    "       WHERE y.nth > 1;\n" \
    "      IF v_next - 1 < 4 THEN v_sets := false; END IF;\n" \
    "    END IF;\n" \
    "    IF NOT v_sets OR v_rounds >= 8 THEN\n" \
    "      -- The items left, in order, each through its own function; rows they lock are locked already.\n" \
    "      FOR i IN v_from..n LOOP\n" \
    "        v_code := NULL; v_id := NULL; v_concert := NULL; v_price := NULL;\n" \
    "        v_res := NULL; v_amount := NULL; v_balance := NULL; v_paid_at := NULL;\n" \
    "        IF NOT v_user_ok[i] THEN\n" \
    "          v_code := CASE WHEN p_kind[i] IN ('HOLD', 'CHARGE') THEN 'NOT_FOUND'\n" \
    "                         WHEN p_kind[i] IN ('PAY', 'CANCEL') THEN 'RESERVATION_NOT_FOUND' ELSE 'VALIDATION' END;\n" \
    "        ELSIF p_kind[i] = 'HOLD' THEN\n" \
    "          SELECT h.o_code, h.o_id, h.o_concert, h.o_price INTO v_code, v_id, v_concert, v_price\n" \
    "            FROM bx_hold(p_user[i], p_schedule[i], CASE WHEN v_seat_ok[i] THEN p_seat[i] END, p_now[i], p_expires[i],\n" \
    "                         p_max[i]) h;\n" \
    "        ELSIF p_kind[i] = 'PAY' THEN\n" \
    "          SELECT y.o_code, y.o_id, y.o_res, y.o_amount, y.o_balance, y.o_paid_at\n" \
    "            INTO v_code, v_id, v_res, v_amount, v_balance, v_paid_at\n" \
    "            FROM bx_pay(p_user[i], p_res[i], coalesce(p_amount[i], -1), p_now[i], p_key[i], p_hash[i]) y;\n" \
    "        ELSIF p_kind[i] = 'CANCEL' THEN\n" \
    "          SELECT c.o_code INTO v_code FROM bx_cancel(p_user[i], p_res[i], p_now[i]) c;\n" \
    "        ELSIF p_kind[i] = 'CHARGE' THEN\n" \
    "          SELECT c.o_code, c.o_balance INTO v_code, v_balance\n" \
    "            FROM bx_charge(p_user[i], p_amount[i], p_now[i], p_key[i], p_hash[i], p_balance_max) c;\n" \
    "        ELSE\n" \
    "          v_code := 'VALIDATION';\n" \
    "        END IF;\n" \
    "        r_code[i] := v_code; r_id[i] := v_id; r_concert[i] := v_concert; r_price[i] := v_price;\n" \
    "        r_res[i] := v_res; r_amount[i] := v_amount; r_balance[i] := v_balance; r_paid_at[i] := v_paid_at;\n" \
    "      END LOOP;\n" \
    "      EXIT;\n" \
    "    END IF;\n" \
    "\n" \
    "    -- One round: items v_from .. v_to - 1, decided on the state the round starts\n" \
    "    -- from and written together.\n" \
    "    v_rounds := v_rounds + 1;\n" \
    "    WITH x AS (\n" \
    "      SELECT x.*\n" \
    "        FROM unnest(p_kind, p_user, p_now, p_schedule, p_seat, p_expires, p_max, p_res, p_amount, p_key, p_hash,\n" \
    "                    v_user_ok, v_seat_ok)\n" \
    "             WITH ORDINALITY AS x(kind, user_id, now, schedule_id, seat_no, expires, max_seats, res, amount, key, hash,\n" \
    "                                  user_ok, seat_ok, i)\n" \
    "       WHERE x.i >= v_from\n" \
    "    ), d AS (\n" \
    "      SELECT x.*,\n" \
    "             s.id IS NOT NULL AS s_found, s.concert_id AS s_concert,\n" \
    "             s.sale_opens_at <= x.now AND x.now < s.sale_closes_at AS s_open,\n" \
    "             t.seat_no IS NOT NULL AS t_found, t.price AS t_price, t.status AS t_status, t.reservation_id AS t_res,\n" \
    "             t.hold_expires_at AS t_end, o.user_id AS t_owner,\n" \
    "             r.id IS NOT NULL AS r_found, r.schedule_id AS r_schedule, r.seat_no AS r_seat, r.status AS r_status,\n" \
    "             r.price AS r_price, r.expires_at AS r_end,\n" \
    "             k.user_id IS NOT NULL AS k_found, k.request_hash AS k_hash,\n" \
    "             py.id AS py_id, py.reservation_id AS py_res, py.amount AS py_amount, py.balance_after AS py_balance,\n" \
    "             py.paid_at AS py_paid_at, lg.id IS NOT NULL AS lg_found, lg.balance_after AS lg_balance,\n" \
    "             u.balance\n"

#define WB4_ROUND_LOOKUPS \
    "        FROM x\n" \
    "        LEFT JOIN schedules s ON x.kind = 'HOLD' AND x.user_ok AND s.id = x.schedule_id\n" \
    "        LEFT JOIN seats t ON x.kind = 'HOLD' AND x.user_ok AND x.seat_ok\n" \
    "                         AND t.schedule_id = x.schedule_id AND t.seat_no = x.seat_no\n" \
    "        LEFT JOIN reservations o ON t.status = 'HELD' AND o.id = t.reservation_id\n" \
    "        LEFT JOIN reservations r ON x.kind IN ('PAY', 'CANCEL') AND x.user_ok AND r.id = x.res AND r.user_id = x.user_id\n" \
    "        LEFT JOIN idempotency k ON x.kind IN ('PAY', 'CHARGE') AND x.user_ok AND k.user_id = x.user_id\n" \
    "                               AND k.scope = CASE x.kind WHEN 'PAY' THEN 'payment' ELSE 'charge' END AND k.key = x.key\n" \
    "        LEFT JOIN payments py ON x.kind = 'PAY' AND py.id = k.result_id AND py.user_id = x.user_id\n" \
    "        LEFT JOIN ledger lg ON x.kind = 'CHARGE' AND lg.id = k.result_id AND lg.user_id = x.user_id\n" \
    "        LEFT JOIN users u ON x.kind IN ('PAY', 'CHARGE') AND x.user_ok AND u.id = x.user_id\n"

#define WB5_ROUND_LOOKUPS \
    "             , o.ctid AS t_res_ctid, r.ctid AS r_ctid\n" \
    "        FROM x\n" \
    "        LEFT JOIN schedules s ON x.kind = 'HOLD' AND x.user_ok AND s.id = x.schedule_id\n" \
    "        LEFT JOIN seats t ON x.kind = 'HOLD' AND x.user_ok AND x.seat_ok\n" \
    "                         AND t.schedule_id = x.schedule_id AND t.seat_no = x.seat_no\n" \
    "        LEFT JOIN LATERAL (SELECT o.ctid, o.user_id FROM reservations o\n" \
    "                            WHERE t.status = 'HELD' AND o.id = t.reservation_id OFFSET 0) o ON true\n" \
    "        LEFT JOIN LATERAL (SELECT r.ctid, r.id, r.schedule_id, r.seat_no, r.status, r.price, r.expires_at FROM reservations r\n" \
    "                            WHERE x.kind IN ('PAY', 'CANCEL') AND x.user_ok AND r.id = x.res AND r.user_id = x.user_id\n" \
    "                            OFFSET 0) r ON true\n" \
    "        LEFT JOIN LATERAL (SELECT k.user_id, k.request_hash, k.result_id FROM idempotency k\n" \
    "                            WHERE x.kind IN ('PAY', 'CHARGE') AND x.user_ok AND k.user_id = x.user_id\n" \
    "                              AND k.scope = CASE x.kind WHEN 'PAY' THEN 'payment' ELSE 'charge' END AND k.key = x.key\n" \
    "                            OFFSET 0) k ON true\n" \
    "        LEFT JOIN LATERAL (SELECT py.id, py.reservation_id, py.amount, py.balance_after, py.paid_at FROM payments py\n" \
    "                            WHERE x.kind = 'PAY' AND py.id = k.result_id AND py.user_id = x.user_id OFFSET 0) py ON true\n" \
    "        LEFT JOIN LATERAL (SELECT lg.id, lg.balance_after FROM ledger lg\n" \
    "                            WHERE x.kind = 'CHARGE' AND lg.id = k.result_id AND lg.user_id = x.user_id OFFSET 0) lg ON true\n" \
    "        LEFT JOIN users u ON x.kind IN ('PAY', 'CHARGE') AND x.user_ok AND u.id = x.user_id\n"

#define WB_ROUND_DECIDE \
    "    ), c AS MATERIALIZED (\n" \
    "      SELECT d.*,\n" \
    "             CASE\n" \
    "               WHEN d.kind IS NULL OR d.kind NOT IN ('HOLD', 'PAY', 'CANCEL', 'CHARGE') THEN 'VALIDATION'\n" \
    "               WHEN NOT d.user_ok THEN\n" \
    "                 CASE WHEN d.kind IN ('HOLD', 'CHARGE') THEN 'NOT_FOUND' ELSE 'RESERVATION_NOT_FOUND' END\n" \
    "               WHEN d.kind = 'HOLD' THEN CASE\n" \
    "                 WHEN NOT d.s_found THEN 'SCHEDULE_NOT_FOUND'\n" \
    "                 WHEN NOT d.s_open THEN 'SALE_CLOSED'\n" \
    "                 WHEN NOT d.t_found THEN 'SEAT_NOT_FOUND'\n" \
    "                 WHEN (SELECT count(*) FROM reservations h\n" \
    "                        WHERE h.schedule_id = d.schedule_id AND h.user_id = d.user_id\n" \
    "                          AND (h.status = 'CONFIRMED' OR (h.status = 'HELD' AND h.expires_at > d.now))) >= d.max_seats\n" \
    "                   THEN 'SEAT_LIMIT'\n" \
    "                 WHEN NOT (d.t_status = 'AVAILABLE' OR (d.t_status = 'HELD' AND d.t_end <= d.now)) THEN 'SEAT_UNAVAILABLE'\n" \
    "                 ELSE 'OK' END\n" \
    "               WHEN d.kind = 'CANCEL' THEN CASE\n" \
    "                 WHEN NOT d.r_found THEN 'RESERVATION_NOT_FOUND'\n" \
    "                 WHEN d.r_status = 'HELD' AND d.r_end > d.now THEN 'OK'\n" \
    "                 ELSE 'NOT_HELD' END\n" \
    "               WHEN d.k_found THEN CASE\n" \
    "                 WHEN d.k_hash IS DISTINCT FROM d.hash THEN 'IDEMPOTENCY_MISMATCH'\n" \
    "                 WHEN d.py_id IS NOT NULL OR d.lg_found THEN 'REPLAY'\n" \
    "                 ELSE 'INTERNAL' END\n" \
    "               WHEN d.kind = 'CHARGE' THEN CASE\n" \
    "                 WHEN d.amount <= 0 OR d.balance < 0 OR d.amount > p_balance_max - d.balance THEN 'BALANCE_LIMIT'\n" \
    "                 ELSE 'OK' END\n" \
    "               ELSE CASE\n" \
    "                 WHEN NOT d.r_found THEN 'RESERVATION_NOT_FOUND'\n" \
    "                 WHEN d.r_status = 'CONFIRMED' THEN 'ALREADY_PAID'\n" \
    "                 WHEN d.r_status = 'CANCELLED' THEN 'NOT_HELD'\n" \
    "                 WHEN d.r_status <> 'HELD' OR d.r_end <= d.now THEN 'HOLD_EXPIRED'\n" \
    "                 WHEN coalesce(d.amount, -1) >= 0 AND coalesce(d.amount, -1) <> d.r_price THEN 'PRICE_MISMATCH'\n" \
    "                 WHEN d.balance < d.r_price THEN 'INSUFFICIENT_BALANCE'\n" \
    "                 ELSE 'OK' END\n" \
    "             END AS code,\n" \
    "             CASE WHEN d.user_ok AND d.kind IN ('HOLD', 'PAY', 'CANCEL', 'CHARGE') THEN d.user_id END AS k_user,\n" \
    "             CASE WHEN d.user_ok AND d.kind = 'HOLD' THEN d.schedule_id WHEN d.r_found THEN d.r_schedule END AS k_schedule,\n" \
    "             CASE WHEN d.user_ok AND d.kind = 'HOLD' THEN d.seat_no WHEN d.r_found THEN d.r_seat END AS k_seat\n" \
    "        FROM d\n" \
    "    ), q AS (\n" \
    "      SELECT coalesce(min(j.i), n + 1) AS q FROM (\n" \
    "        SELECT a.i FROM (SELECT c.i, row_number() OVER (PARTITION BY c.k_user ORDER BY c.i) AS nth\n" \
    "                           FROM c WHERE c.k_user IS NOT NULL) a WHERE a.nth > 1\n" \
    "        UNION ALL\n" \
    "        SELECT b.i FROM (SELECT c.i, row_number() OVER (PARTITION BY c.k_schedule, c.k_seat ORDER BY c.i) AS nth\n" \
    "                           FROM c WHERE c.k_schedule IS NOT NULL) b WHERE b.nth > 1\n" \
    "        UNION ALL\n" \
    "        SELECT c.i FROM c JOIN (SELECT c.t_owner, min(c.i) AS first FROM c WHERE c.t_owner IS NOT NULL GROUP BY c.t_owner) v\n" \
    "                            ON v.t_owner = c.k_user AND v.first < c.i\n" \
    "      ) j\n" \
    "    ), w AS (\n" \
    "      -- The round's items in order, with the ids their rows will have: drawn here,\n" \
    "      -- in item order, from the sequences the inserts would draw from.\n" \
    "      SELECT o.*,\n" \
    "             CASE WHEN o.kind = 'HOLD' AND o.code = 'OK' THEN nextval('reservations_id_seq') END AS new_res,\n" \
    "             CASE WHEN o.kind = 'PAY' AND o.code = 'OK' THEN nextval('payments_id_seq') END AS new_pay,\n" \
    "             CASE WHEN o.kind IN ('PAY', 'CHARGE') AND o.code = 'OK' THEN nextval('ledger_id_seq') END AS new_ledger,\n" \
    "             o.kind = 'PAY' AND o.code = 'HOLD_EXPIRED' AND o.r_status = 'HELD' AS pay_expires\n" \
    "        FROM (SELECT c.* FROM c WHERE c.i < (SELECT q.q FROM q) ORDER BY c.i OFFSET 0) o\n" \
    "    ), v AS (\n" \
    "      -- What each item writes: at most one seat row and one reservation row of its own.\n" \
    "      SELECT w.*,\n" \
    "             CASE WHEN w.new_res IS NOT NULL THEN 'HELD' WHEN w.new_pay IS NOT NULL THEN 'SOLD'\n" \
    "                  WHEN (w.kind = 'CANCEL' AND w.code = 'OK') OR w.pay_expires THEN 'AVAILABLE' END AS seat_to,\n" \
    "             CASE WHEN w.new_res IS NOT NULL AND w.t_status = 'HELD' THEN w.t_res\n" \
    "                  WHEN w.new_pay IS NOT NULL OR (w.kind = 'CANCEL' AND w.code = 'OK') OR w.pay_expires THEN w.res\n" \
    "             END AS res_id\n"

#define WB5_RES_CTID \
    "             , CASE WHEN w.new_res IS NOT NULL AND w.t_status = 'HELD' THEN w.t_res_ctid\n" \
    "                    WHEN w.new_pay IS NOT NULL OR (w.kind = 'CANCEL' AND w.code = 'OK') OR w.pay_expires THEN w.r_ctid\n" \
    "               END AS res_ctid\n"

#define WB_ROUND_WRITES \
    "        FROM w\n" \
    "    ), new_res AS (\n" \
    "      INSERT INTO reservations(id, user_id, schedule_id, seat_no, price, status, held_at, expires_at)\n" \
    "      SELECT w.new_res, w.user_id, w.schedule_id, w.seat_no, w.t_price, 'HELD', w.now, w.expires FROM w\n" \
    "       WHERE w.new_res IS NOT NULL\n" \
    "    ), seat_w AS (\n" \
    "      UPDATE seats t\n" \
    "         SET status = v.seat_to,\n" \
    "             reservation_id = CASE WHEN v.new_res IS NOT NULL THEN v.new_res WHEN v.new_pay IS NOT NULL THEN v.res END,\n" \
    "             hold_expires_at = CASE WHEN v.new_res IS NOT NULL THEN v.expires END\n" \
    "        FROM v\n" \
    "       WHERE v.seat_to IS NOT NULL\n" \
    "         AND t.schedule_id = CASE WHEN v.new_res IS NOT NULL THEN v.schedule_id ELSE v.r_schedule END\n" \
    "         AND t.seat_no = CASE WHEN v.new_res IS NOT NULL THEN v.seat_no ELSE v.r_seat END\n" \
    "         AND (v.new_res IS NOT NULL OR (t.reservation_id = v.res AND t.status = 'HELD'))\n" \
    "      RETURNING v.new_pay IS NOT NULL AS sale\n" \
    "    ), res_w AS (\n" \
    "      UPDATE reservations r\n" \
    "         SET status = CASE WHEN v.new_pay IS NOT NULL THEN 'CONFIRMED' WHEN v.kind = 'CANCEL' THEN 'CANCELLED'\n" \
    "                           ELSE 'EXPIRED' END,\n" \
    "             confirmed_at = CASE WHEN v.new_pay IS NOT NULL THEN v.now ELSE r.confirmed_at END\n" \
    "        FROM v\n"

#define WB4_RES_W_WHERE \
    "       WHERE r.id = v.res_id AND r.status = 'HELD'\n"

#define WB5_RES_W_WHERE \
    "       WHERE r.ctid = v.res_ctid AND r.id = v.res_id AND r.status = 'HELD'\n"

#define WB_ROUND_END \
    "         AND CASE WHEN v.new_res IS NOT NULL THEN r.expires_at <= v.now WHEN v.pay_expires THEN true\n" \
    "                  ELSE r.expires_at > v.now END\n" \
    "      RETURNING v.new_pay IS NOT NULL AS sale\n" \
    "    ), bal_w AS (\n" \
    "      UPDATE users u SET balance = u.balance + CASE WHEN w.new_pay IS NOT NULL THEN -w.r_price ELSE w.amount END\n" \
    "        FROM w\n" \
    "       WHERE w.new_ledger IS NOT NULL AND u.id = w.user_id AND (w.new_pay IS NULL OR u.balance >= w.r_price)\n" \
    "      RETURNING w.new_pay IS NOT NULL AS sale\n" \
    "    ), pay_ins AS (\n" \
    "      INSERT INTO payments(id, user_id, reservation_id, amount, balance_after, paid_at, idempotency_key)\n" \
    "      SELECT w.new_pay, w.user_id, w.res, w.r_price, w.balance - w.r_price, w.now, w.key FROM w\n" \
    "       WHERE w.new_pay IS NOT NULL\n" \
    "    ), led_ins AS (\n" \
    "      INSERT INTO ledger(id, user_id, kind, amount, balance_after, created_at, reference)\n" \
    "      SELECT w.new_ledger, w.user_id, CASE WHEN w.new_pay IS NOT NULL THEN 'PAYMENT' ELSE 'CHARGE' END,\n" \
    "             CASE WHEN w.new_pay IS NOT NULL THEN w.r_price ELSE w.amount END,\n" \
    "             CASE WHEN w.new_pay IS NOT NULL THEN w.balance - w.r_price ELSE w.balance + w.amount END, w.now,\n" \
    "             CASE WHEN w.new_pay IS NOT NULL THEN 'payment:' || w.new_pay ELSE w.key END\n" \
    "        FROM w WHERE w.new_ledger IS NOT NULL\n" \
    "    ), idem_ins AS (\n" \
    "      INSERT INTO idempotency(user_id, scope, key, request_hash, result_id, created_at)\n" \
    "      SELECT w.user_id, CASE WHEN w.new_pay IS NOT NULL THEN 'payment' ELSE 'charge' END, w.key, w.hash,\n" \
    "             coalesce(w.new_pay, w.new_ledger), w.now\n" \
    "        FROM w WHERE w.new_ledger IS NOT NULL AND w.key IS NOT NULL\n" \
    "    )\n" \
    "    SELECT (SELECT q.q FROM q),\n" \
    "           array_agg(w.code ORDER BY w.i),\n" \
    "           array_agg(CASE WHEN w.code = 'REPLAY' THEN w.py_id ELSE coalesce(w.new_res, w.new_pay) END ORDER BY w.i),\n" \
    "           array_agg(CASE WHEN w.kind = 'HOLD' AND w.user_ok THEN w.s_concert END ORDER BY w.i),\n" \
    "           array_agg(CASE WHEN w.kind = 'HOLD' AND w.code IN ('SEAT_LIMIT', 'SEAT_UNAVAILABLE', 'OK') THEN w.t_price END\n" \
    "                     ORDER BY w.i),\n" \
    "           array_agg(CASE WHEN w.new_pay IS NOT NULL THEN w.res WHEN w.code = 'REPLAY' THEN w.py_res END ORDER BY w.i),\n" \
    "           array_agg(CASE WHEN w.new_pay IS NOT NULL THEN w.r_price WHEN w.code = 'REPLAY' THEN w.py_amount END\n" \
    "                     ORDER BY w.i),\n" \
    "           array_agg(CASE WHEN w.new_pay IS NOT NULL THEN w.balance - w.r_price\n" \
    "                          WHEN w.new_ledger IS NOT NULL THEN w.balance + w.amount\n" \
    "                          WHEN w.code = 'REPLAY' THEN coalesce(w.py_balance, w.lg_balance) END ORDER BY w.i),\n" \
    "           array_agg(CASE WHEN w.new_pay IS NOT NULL THEN w.now WHEN w.code = 'REPLAY' THEN w.py_paid_at END\n" \
    "                     ORDER BY w.i),\n" \
    "           count(w.new_pay),\n" \
    "           (SELECT count(*) FROM seat_w WHERE seat_w.sale),\n" \
    "           (SELECT count(*) FROM res_w WHERE res_w.sale),\n" \
    "           (SELECT count(*) FROM bal_w WHERE bal_w.sale)\n" \
    "      INTO v_to, c_code, c_id, c_concert, c_price, c_res, c_amount, c_balance, c_paid_at,\n" \
    "           v_paid, v_sold, v_confirmed, v_debited\n" \
    "      FROM w;\n" \
    "    IF v_sold <> v_paid OR v_confirmed <> v_paid OR v_debited <> v_paid THEN\n" \
    "      RAISE EXCEPTION 'bx_write_batch: % payments, but % seats sold, % reservations confirmed, % balances debited',\n" \
    "        v_paid, v_sold, v_confirmed, v_debited;\n" \
    "    END IF;\n" \
    "    r_code := r_code || c_code; r_id := r_id || c_id; r_concert := r_concert || c_concert;\n" \
    "    r_price := r_price || c_price; r_res := r_res || c_res; r_amount := r_amount || c_amount;\n" \
    "    r_balance := r_balance || c_balance; r_paid_at := r_paid_at || c_paid_at;\n" \
    "    -- A round costs about as much as 3 items by their functions: after one that\n" \
    "    -- decided fewer than 4 (a user or a seat met again at once), the rest go item by item.\n" \
    "    IF v_to - v_from < 4 THEN v_sets := false; END IF;\n" \
    "    v_from := v_to;\n" \
    "  END LOOP;\n" \
    "\n" \
    "  -- Every seat whose row changed, as it is now (the rows are still locked).\n" \
    "  SELECT array_agg(t.schedule_id || ',' || t.seat_no || ',' || left(t.status, 1) || ',' || coalesce(t.hold_expires_at, 0)\n" \
    "                   ORDER BY t.schedule_id, t.seat_no)\n" \
    "    INTO v_changes\n" \
    "    FROM unnest(l_schedule, l_seat, l_status, l_res, l_end) AS b(schedule_id, seat_no, status, res, hold_end)\n" \
    "    JOIN seats t ON t.schedule_id = b.schedule_id AND t.seat_no = b.seat_no\n" \
    "    WHERE (t.status, t.reservation_id, t.hold_expires_at) IS DISTINCT FROM (b.status, b.res, b.hold_end);\n" \
    "  IF v_changes IS NOT NULL THEN\n" \
    "    PERFORM bx_notify_seats(v_changes);\n" \
    "  END IF;\n" \
    "\n" \
    "  RETURN QUERY\n" \
    "    SELECT x.code, x.id, x.concert, x.price, x.res, x.amount, x.balance, x.paid_at,\n" \
    "           CASE WHEN x.kind = 'PAY' AND x.code = 'OK' THEN\n" \
    "             (SELECT count(*) FROM reservations r JOIN schedules s ON s.id = r.schedule_id\n" \
    "               WHERE r.user_id = x.user_id AND s.concert_id = x.concert_id AND r.status = 'HELD'\n" \
    "                 AND r.expires_at > x.now)::integer\n" \
    "           END\n" \
    "      FROM unnest(p_kind, p_user, p_now, p_concert, r_code, r_id, r_concert, r_price, r_res, r_amount, r_balance,\n" \
    "                  r_paid_at) WITH ORDINALITY\n" \
    "           AS x(kind, user_id, now, concert_id, code, id, concert, price, res, amount, balance, paid_at, i)\n" \
    "      ORDER BY x.i;\n" \
    "END\n" \
    "$fn$;\n"

/* pg_migrations[i] is migration number i + 1. Each runs as one EXECUTE inside the
 * migration's DO block, so it may hold several statements; function bodies are
 * quoted with $fn$ (the migration itself is quoted with $m<N>$ by store_pg.c).
 *
 * Functions report expected domain outcomes in o_code ('OK', 'SEAT_UNAVAILABLE',
 * ...) instead of raising: every refusal is decided before the first write, so
 * returning normally commits nothing of it, except where a comment says the write
 * is meant to stay (an expired hold found by pay). Anything unexpected raises and
 * rolls the whole call back.
 *
 * Row locks are always taken in one order — user, seat, reservation, schedule —
 * so no two calls can deadlock:
 *   - the user row (FOR NO KEY UPDATE) serializes one user's money moves and
 *     holds: balance checks, idempotency keys (invariant 2) and the seat limit
 *     (invariant 5) are decided under it;
 *   - the seat row serializes everything that changes a reservation of that
 *     seat while it is HELD (hold, takeover, cancel, pay, sweep): invariant 1
 *     and CONTRACT §6 "exactly one outcome" are decided under it;
 *   - the schedule row, last and only by a sale: the seats trigger of migration 2
 *     bumps its sold_count (until migration 3, which drops the trigger and takes
 *     this order to batches of writes: see there). */
static const char *const pg_migrations[] = {
    /* 1: the domain of CONTRACT §3, waiting-room persistence, and the store functions. */
    "CREATE TABLE meta ("
    "  key text PRIMARY KEY,"
    "  value bytea NOT NULL"
    ");"

    "CREATE TABLE users ("
    "  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  name text NOT NULL UNIQUE,"
    "  pwhash text NOT NULL,"
    "  balance bigint NOT NULL DEFAULT 0 CHECK (balance >= 0)," /* invariant 2 */
    "  created_at bigint NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    ");"

    "CREATE TABLE concerts ("
    "  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  title text NOT NULL,"
    "  venue text NOT NULL"
    ");"

    "CREATE TABLE schedules ("
    "  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  concert_id bigint NOT NULL REFERENCES concerts(id),"
    "  starts_at bigint NOT NULL,"
    "  sale_opens_at bigint NOT NULL,"
    "  sale_closes_at bigint NOT NULL,"
    "  seat_count integer NOT NULL CHECK (seat_count >= 1)"
    ");"
    "CREATE INDEX schedules_by_concert ON schedules(concert_id, starts_at);"

    /* A seat points at the reservation holding or owning it; AVAILABLE exactly
     * when it points at none. */
    "CREATE TABLE seats ("
    "  schedule_id bigint NOT NULL REFERENCES schedules(id),"
    "  seat_no integer NOT NULL CHECK (seat_no >= 1),"
    "  price bigint NOT NULL CHECK (price >= 0),"
    "  status text NOT NULL DEFAULT 'AVAILABLE' CHECK (status IN ('AVAILABLE','HELD','SOLD')),"
    "  reservation_id bigint,"
    "  hold_expires_at bigint,"
    "  PRIMARY KEY (schedule_id, seat_no),"
    "  CHECK ((status = 'AVAILABLE') = (reservation_id IS NULL)),"
    "  CHECK ((status = 'HELD') = (hold_expires_at IS NOT NULL))"
    ");"
    /* The sweeper's work list (bx_sweep). */
    "CREATE INDEX seats_held_by_expiry ON seats(hold_expires_at) WHERE status = 'HELD';"

    "CREATE TABLE reservations ("
    "  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  user_id bigint NOT NULL REFERENCES users(id),"
    "  schedule_id bigint NOT NULL,"
    "  seat_no integer NOT NULL,"
    "  price bigint NOT NULL CHECK (price >= 0),"
    "  status text NOT NULL CHECK (status IN ('HELD','CONFIRMED','EXPIRED','CANCELLED')),"
    "  held_at bigint NOT NULL,"
    "  expires_at bigint NOT NULL,"
    "  confirmed_at bigint,"
    "  FOREIGN KEY (schedule_id, seat_no) REFERENCES seats(schedule_id, seat_no)"
    ");"
    "ALTER TABLE seats ADD FOREIGN KEY (reservation_id) REFERENCES reservations(id);"
    "CREATE INDEX reservations_by_user ON reservations(user_id, id);"
    "CREATE INDEX reservations_by_schedule_user ON reservations(schedule_id, user_id);"
    "CREATE INDEX reservations_by_seat ON reservations(schedule_id, seat_no);"
    /* Invariant 1, enforced by the schema as well as by the conditional updates. */
    "CREATE UNIQUE INDEX reservations_one_confirmed_per_seat"
    "  ON reservations(schedule_id, seat_no) WHERE status = 'CONFIRMED';"

    "CREATE TABLE payments ("
    "  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  user_id bigint NOT NULL REFERENCES users(id),"
    "  reservation_id bigint NOT NULL UNIQUE REFERENCES reservations(id)," /* invariant 3 */
    "  amount bigint NOT NULL CHECK (amount >= 0),"
    "  balance_after bigint NOT NULL CHECK (balance_after >= 0),"
    "  paid_at bigint NOT NULL,"
    "  idempotency_key text"
    ");"
    "CREATE INDEX payments_by_user ON payments(user_id, id);"

    "CREATE TABLE ledger ("
    "  id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    "  user_id bigint NOT NULL REFERENCES users(id),"
    "  kind text NOT NULL CHECK (kind IN ('CHARGE','PAYMENT','REFUND')),"
    "  amount bigint NOT NULL CHECK (amount >= 0),"
    "  balance_after bigint NOT NULL CHECK (balance_after >= 0),"
    "  created_at bigint NOT NULL,"
    "  reference text"
    ");"
    "CREATE INDEX ledger_by_user ON ledger(user_id, id);"
    "CREATE INDEX ledger_by_reference ON ledger(reference);"

    /* scope: 'charge' | 'payment'; result_id: ledger id (charge) or payment id. */
    "CREATE TABLE idempotency ("
    "  user_id bigint NOT NULL REFERENCES users(id),"
    "  scope text NOT NULL,"
    "  key text NOT NULL,"
    "  request_hash bytea NOT NULL,"
    "  result_id bigint NOT NULL,"
    "  created_at bigint NOT NULL,"
    "  PRIMARY KEY (user_id, scope, key)"
    ");"

    "CREATE TABLE queue_tokens ("
    "  token text PRIMARY KEY,"
    "  user_id bigint NOT NULL,"
    "  concert_id bigint NOT NULL,"
    "  seq bigint NOT NULL,"
    "  status text NOT NULL CHECK (status IN ('WAITING','ACTIVE','EXPIRED')),"
    "  issued_at bigint NOT NULL,"
    "  activated_at bigint NOT NULL DEFAULT 0,"
    "  last_seen_at bigint NOT NULL,"
    "  expires_at bigint NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX queue_tokens_live ON queue_tokens(concert_id, seq)"
    "  WHERE status IN ('WAITING','ACTIVE');"

    /* The HMAC secret: the first caller's random bytes win; everyone reads them
     * back (the SELECT is a new statement, so it sees a concurrent winner). */
    "CREATE FUNCTION bx_secret(p_fresh bytea, OUT o_value bytea) LANGUAGE plpgsql AS $fn$\n"
    "BEGIN\n"
    "  INSERT INTO meta(key, value) VALUES ('secret', p_fresh) ON CONFLICT (key) DO NOTHING;\n"
    "  SELECT value INTO o_value FROM meta WHERE key = 'secret';\n"
    "END\n"
    "$fn$;"

    /* Charge (invariant 2): under the user lock, replay check, limit check
     * (BALANCE_LIMIT when balance + amount > p_max), balance update, CHARGE ledger
     * entry, idempotency record. A second call with the same key waits for the
     * first on the user row and then finds its record: REPLAY, never a conflict. */
    "CREATE FUNCTION bx_charge(p_user bigint, p_amount bigint, p_now bigint, p_key text, p_hash bytea,\n"
    "    p_max bigint, OUT o_code text, OUT o_balance bigint) LANGUAGE plpgsql AS $fn$\n"
    "DECLARE\n"
    "  v_bal bigint; v_hash bytea; v_result bigint; v_ledger bigint;\n"
    "BEGIN\n"
    "  SELECT balance INTO v_bal FROM users WHERE id = p_user FOR NO KEY UPDATE;\n"
    "  IF NOT FOUND THEN o_code := 'NOT_FOUND'; RETURN; END IF;\n"
    "  IF p_key IS NOT NULL THEN\n"
    "    SELECT request_hash, result_id INTO v_hash, v_result FROM idempotency\n"
    "      WHERE user_id = p_user AND scope = 'charge' AND key = p_key;\n"
    "    IF FOUND THEN\n"
    "      IF v_hash IS DISTINCT FROM p_hash THEN o_code := 'IDEMPOTENCY_MISMATCH'; RETURN; END IF;\n"
    "      SELECT balance_after INTO o_balance FROM ledger WHERE id = v_result AND user_id = p_user;\n"
    "      o_code := CASE WHEN FOUND THEN 'REPLAY' ELSE 'INTERNAL' END;\n"
    "      RETURN;\n"
    "    END IF;\n"
    "  END IF;\n"
    "  IF p_amount <= 0 OR v_bal < 0 OR p_amount > p_max - v_bal THEN\n"
    "    o_code := 'BALANCE_LIMIT'; RETURN;\n"
    "  END IF;\n"
    "  UPDATE users SET balance = balance + p_amount WHERE id = p_user;\n"
    "  o_balance := v_bal + p_amount;\n"
    "  INSERT INTO ledger(user_id, kind, amount, balance_after, created_at, reference)\n"
    "    VALUES (p_user, 'CHARGE', p_amount, o_balance, p_now, p_key) RETURNING id INTO v_ledger;\n"
    "  IF p_key IS NOT NULL THEN\n"
    "    INSERT INTO idempotency(user_id, scope, key, request_hash, result_id, created_at)\n"
    "      VALUES (p_user, 'charge', p_key, p_hash, v_ledger, p_now);\n"
    "  END IF;\n"
    "  o_code := 'OK';\n"
    "END\n"
    "$fn$;"

    /* Schedule and its seats 1..p_count at p_price, one transaction. */
    "CREATE FUNCTION bx_schedule_create(p_concert bigint, p_starts bigint, p_opens bigint, p_closes bigint,\n"
    "    p_count integer, p_price bigint, OUT o_code text, OUT o_id bigint) LANGUAGE plpgsql AS $fn$\n"
    "BEGIN\n"
    "  PERFORM 1 FROM concerts WHERE id = p_concert;\n"
    "  IF NOT FOUND THEN o_code := 'CONCERT_NOT_FOUND'; RETURN; END IF;\n"
    "  INSERT INTO schedules(concert_id, starts_at, sale_opens_at, sale_closes_at, seat_count)\n"
    "    VALUES (p_concert, p_starts, p_opens, p_closes, p_count) RETURNING id INTO o_id;\n"
    "  INSERT INTO seats(schedule_id, seat_no, price)\n"
    "    SELECT o_id, g, p_price FROM generate_series(1, p_count) AS g;\n"
    "  o_code := 'OK';\n"
    "END\n"
    "$fn$;"

    /* Hold (CONTRACT §6, invariants 1 and 5): schedule on sale, then under the user
     * lock and the seat lock: seat exists, user under p_max seats (CONFIRMED +
     * live HELD), seat free at p_now (AVAILABLE, or HELD past its expiry). The new
     * HELD reservation takes the seat; a hold taken over becomes EXPIRED here. */
    "CREATE FUNCTION bx_hold(p_user bigint, p_schedule bigint, p_seat integer, p_now bigint, p_expires bigint,\n"
    "    p_max integer, OUT o_code text, OUT o_id bigint, OUT o_concert bigint, OUT o_price bigint)\n"
    "    LANGUAGE plpgsql AS $fn$\n"
    "DECLARE\n"
    "  v_opens bigint; v_closes bigint; v_status text; v_old bigint; v_hold_end bigint; v_count bigint;\n"
    "BEGIN\n"
    "  SELECT concert_id, sale_opens_at, sale_closes_at INTO o_concert, v_opens, v_closes\n"
    "    FROM schedules WHERE id = p_schedule;\n"
    "  IF NOT FOUND THEN o_code := 'SCHEDULE_NOT_FOUND'; RETURN; END IF;\n"
    "  IF NOT (v_opens <= p_now AND p_now < v_closes) THEN o_code := 'SALE_CLOSED'; RETURN; END IF;\n"
    "  PERFORM 1 FROM users WHERE id = p_user FOR NO KEY UPDATE;\n"
    "  SELECT price, status, reservation_id, hold_expires_at INTO o_price, v_status, v_old, v_hold_end\n"
    "    FROM seats WHERE schedule_id = p_schedule AND seat_no = p_seat FOR NO KEY UPDATE;\n"
    "  IF NOT FOUND THEN o_code := 'SEAT_NOT_FOUND'; RETURN; END IF;\n"
    "  SELECT count(*) INTO v_count FROM reservations\n"
    "    WHERE schedule_id = p_schedule AND user_id = p_user\n"
    "      AND (status = 'CONFIRMED' OR (status = 'HELD' AND expires_at > p_now));\n"
    "  IF v_count >= p_max THEN o_code := 'SEAT_LIMIT'; RETURN; END IF;\n"
    "  IF NOT (v_status = 'AVAILABLE' OR (v_status = 'HELD' AND v_hold_end <= p_now)) THEN\n"
    "    o_code := 'SEAT_UNAVAILABLE'; RETURN;\n"
    "  END IF;\n"
    "  INSERT INTO reservations(user_id, schedule_id, seat_no, price, status, held_at, expires_at)\n"
    "    VALUES (p_user, p_schedule, p_seat, o_price, 'HELD', p_now, p_expires) RETURNING id INTO o_id;\n"
    "  UPDATE seats SET status = 'HELD', reservation_id = o_id, hold_expires_at = p_expires\n"
    "    WHERE schedule_id = p_schedule AND seat_no = p_seat;\n"
    "  IF v_status = 'HELD' THEN\n"
    "    UPDATE reservations SET status = 'EXPIRED' WHERE id = v_old AND status = 'HELD' AND expires_at <= p_now;\n"
    "  END IF;\n"
    "  o_code := 'OK';\n"
    "END\n"
    "$fn$;"

    /* Cancel: the owner's live HELD reservation becomes CANCELLED and its seat
     * AVAILABLE, under the seat lock. */
    "CREATE FUNCTION bx_cancel(p_user bigint, p_res bigint, p_now bigint, OUT o_code text)\n"
    "    LANGUAGE plpgsql AS $fn$\n"
    "DECLARE\n"
    "  v_schedule bigint; v_seat integer;\n"
    "BEGIN\n"
    "  SELECT schedule_id, seat_no INTO v_schedule, v_seat FROM reservations WHERE id = p_res AND user_id = p_user;\n"
    "  IF NOT FOUND THEN o_code := 'RESERVATION_NOT_FOUND'; RETURN; END IF;\n"
    "  PERFORM 1 FROM seats WHERE schedule_id = v_schedule AND seat_no = v_seat FOR NO KEY UPDATE;\n"
    "  UPDATE reservations SET status = 'CANCELLED'\n"
    "    WHERE id = p_res AND status = 'HELD' AND expires_at > p_now;\n"
    "  IF NOT FOUND THEN o_code := 'NOT_HELD'; RETURN; END IF;\n"
    "  UPDATE seats SET status = 'AVAILABLE', reservation_id = NULL, hold_expires_at = NULL\n"
    "    WHERE schedule_id = v_schedule AND seat_no = v_seat AND reservation_id = p_res AND status = 'HELD';\n"
    "  o_code := 'OK';\n"
    "END\n"
    "$fn$;"

    /* Pay (CONTRACT §3 invariants 1-3, §6), one transaction: under the user lock the
     * replay check; under the seat lock the hold must be the user's, HELD and live
     * at p_now; debit only if balance >= price; payment row, PAYMENT ledger entry
     * 'payment:<id>', reservation CONFIRMED, seat SOLD. A hold found expired is
     * marked EXPIRED and its seat freed, and that write is kept (HOLD_EXPIRED). */
    "CREATE FUNCTION bx_pay(p_user bigint, p_res bigint, p_expected bigint, p_now bigint, p_key text,\n"
    "    p_hash bytea, OUT o_code text, OUT o_id bigint, OUT o_res bigint, OUT o_amount bigint,\n"
    "    OUT o_balance bigint, OUT o_paid_at bigint) LANGUAGE plpgsql AS $fn$\n"
    "DECLARE\n"
    "  v_bal bigint; v_hash bytea; v_result bigint; v_schedule bigint; v_seat integer;\n"
    "  v_status text; v_price bigint; v_expires bigint;\n"
    "BEGIN\n"
    "  SELECT balance INTO v_bal FROM users WHERE id = p_user FOR NO KEY UPDATE;\n"
    "  IF NOT FOUND THEN o_code := 'RESERVATION_NOT_FOUND'; RETURN; END IF;\n"
    "  IF p_key IS NOT NULL THEN\n"
    "    SELECT request_hash, result_id INTO v_hash, v_result FROM idempotency\n"
    "      WHERE user_id = p_user AND scope = 'payment' AND key = p_key;\n"
    "    IF FOUND THEN\n"
    "      IF v_hash IS DISTINCT FROM p_hash THEN o_code := 'IDEMPOTENCY_MISMATCH'; RETURN; END IF;\n"
    "      SELECT id, reservation_id, amount, balance_after, paid_at\n"
    "        INTO o_id, o_res, o_amount, o_balance, o_paid_at\n"
    "        FROM payments WHERE id = v_result AND user_id = p_user;\n"
    "      o_code := CASE WHEN FOUND THEN 'REPLAY' ELSE 'INTERNAL' END;\n"
    "      RETURN;\n"
    "    END IF;\n"
    "  END IF;\n"
    "  SELECT schedule_id, seat_no INTO v_schedule, v_seat FROM reservations WHERE id = p_res AND user_id = p_user;\n"
    "  IF NOT FOUND THEN o_code := 'RESERVATION_NOT_FOUND'; RETURN; END IF;\n"
    "  PERFORM 1 FROM seats WHERE schedule_id = v_schedule AND seat_no = v_seat FOR NO KEY UPDATE;\n"
    /* A new statement: sees every change committed before the seat lock was granted. */
    "  SELECT status, price, expires_at INTO v_status, v_price, v_expires FROM reservations WHERE id = p_res;\n"
    "  IF v_status = 'CONFIRMED' THEN o_code := 'ALREADY_PAID'; RETURN; END IF;\n"
    "  IF v_status = 'CANCELLED' THEN o_code := 'NOT_HELD'; RETURN; END IF;\n"
    "  IF v_status <> 'HELD' THEN o_code := 'HOLD_EXPIRED'; RETURN; END IF;\n"
    "  IF v_expires <= p_now THEN\n"
    "    UPDATE reservations SET status = 'EXPIRED' WHERE id = p_res AND status = 'HELD';\n"
    "    UPDATE seats SET status = 'AVAILABLE', reservation_id = NULL, hold_expires_at = NULL\n"
    "      WHERE schedule_id = v_schedule AND seat_no = v_seat AND reservation_id = p_res AND status = 'HELD';\n"
    "    o_code := 'HOLD_EXPIRED'; RETURN;\n"
    "  END IF;\n"
    "  IF p_expected >= 0 AND p_expected <> v_price THEN o_code := 'PRICE_MISMATCH'; RETURN; END IF;\n"
    "  IF v_bal < v_price THEN o_code := 'INSUFFICIENT_BALANCE'; RETURN; END IF;\n"
    "  UPDATE users SET balance = balance - v_price WHERE id = p_user AND balance >= v_price;\n"
    "  IF NOT FOUND THEN RAISE EXCEPTION 'bx_pay: balance of user % changed under its lock', p_user; END IF;\n"
    "  o_balance := v_bal - v_price;\n"
    "  INSERT INTO payments(user_id, reservation_id, amount, balance_after, paid_at, idempotency_key)\n"
    "    VALUES (p_user, p_res, v_price, o_balance, p_now, p_key) RETURNING id INTO o_id;\n"
    "  INSERT INTO ledger(user_id, kind, amount, balance_after, created_at, reference)\n"
    "    VALUES (p_user, 'PAYMENT', v_price, o_balance, p_now, 'payment:' || o_id);\n"
    "  UPDATE reservations SET status = 'CONFIRMED', confirmed_at = p_now\n"
    "    WHERE id = p_res AND status = 'HELD' AND expires_at > p_now;\n"
    "  IF NOT FOUND THEN RAISE EXCEPTION 'bx_pay: reservation % changed under its seat lock', p_res; END IF;\n"
    "  UPDATE seats SET status = 'SOLD', hold_expires_at = NULL\n"
    "    WHERE schedule_id = v_schedule AND seat_no = v_seat AND reservation_id = p_res AND status = 'HELD';\n"
    "  IF NOT FOUND THEN\n"
    "    RAISE EXCEPTION 'bx_pay: seat %/% does not point at live hold %', v_schedule, v_seat, p_res;\n"
    "  END IF;\n"
    "  IF p_key IS NOT NULL THEN\n"
    "    INSERT INTO idempotency(user_id, scope, key, request_hash, result_id, created_at)\n"
    "      VALUES (p_user, 'payment', p_key, p_hash, o_id, p_now);\n"
    "  END IF;\n"
    "  o_res := p_res; o_amount := v_price; o_paid_at := p_now; o_code := 'OK';\n"
    "END\n"
    "$fn$;"

    /* Sweep one batch: lock up to p_limit seats whose hold ended, skipping seats
     * another transaction has locked (another instance's sweeper, a pay or a hold
     * in flight), expire the HELD reservations they point at, free those seats.
     * N sweepers never wait for each other and never expire one reservation twice:
     * a seat is in at most one sweeper's batch, and every update is conditional.
     * o_locked = seats taken into the batch (the caller repeats while it is p_limit). */
    "CREATE FUNCTION bx_sweep(p_now bigint, p_limit integer, OUT o_locked integer, OUT o_expired integer)\n"
    "    LANGUAGE plpgsql AS $fn$\n"
    "DECLARE\n"
    "  v_res bigint[]; v_schedule bigint[]; v_seat integer[];\n"
    "BEGIN\n"
    "  WITH batch AS (\n"
    "    SELECT reservation_id FROM seats WHERE status = 'HELD' AND hold_expires_at <= p_now\n"
    "    ORDER BY hold_expires_at LIMIT p_limit FOR NO KEY UPDATE SKIP LOCKED\n"
    "  ), expired AS (\n"
    "    UPDATE reservations r SET status = 'EXPIRED' FROM batch\n"
    "    WHERE r.id = batch.reservation_id AND r.status = 'HELD' AND r.expires_at <= p_now\n"
    "    RETURNING r.id, r.schedule_id, r.seat_no\n"
    "  )\n"
    "  SELECT (SELECT count(*) FROM batch), array_agg(id), array_agg(schedule_id), array_agg(seat_no)\n"
    "    INTO o_locked, v_res, v_schedule, v_seat FROM expired;\n"
    "  UPDATE seats t SET status = 'AVAILABLE', reservation_id = NULL, hold_expires_at = NULL\n"
    "    FROM unnest(v_schedule, v_seat, v_res) AS x(schedule_id, seat_no, res_id)\n"
    "    WHERE t.schedule_id = x.schedule_id AND t.seat_no = x.seat_no\n"
    "      AND t.reservation_id = x.res_id AND t.status = 'HELD';\n"
    "  o_expired := coalesce(array_length(v_res, 1), 0);\n"
    "END\n"
    "$fn$;",

    /* 2: the date list without a seat scan. available = seat_count - sold_count -
     * live holds, where the live holds are a range of seats_held_by_schedule.
     * sold_count is kept by a trigger rather than inside bx_pay: a call already
     * running the previous bx_pay body when this commits (another instance, mid
     * roll) still counts its sale, and so does any other path that sells or
     * unsells a seat. The trigger updates the schedule row after the seat row, so
     * the lock order becomes user, seat, reservation, schedule. schedules is
     * locked first (ALTER), then seats (LOCK), the order every reader takes them
     * in; with seats locked against writes, no sale can commit between the
     * backfill and the trigger. audit checks sold_count (invariant 1). */
    "ALTER TABLE schedules ADD COLUMN sold_count integer NOT NULL DEFAULT 0,"
    "  ADD CONSTRAINT schedules_sold_count_range CHECK (sold_count BETWEEN 0 AND seat_count);"
    "LOCK TABLE seats IN SHARE ROW EXCLUSIVE MODE;"
    "UPDATE schedules s SET sold_count = t.sold"
    "  FROM (SELECT schedule_id, count(*) AS sold FROM seats WHERE status = 'SOLD' GROUP BY schedule_id) t"
    "  WHERE t.schedule_id = s.id;"
    "CREATE FUNCTION bx_seats_sold_count() RETURNS trigger LANGUAGE plpgsql AS $fn$\n"
    "BEGIN\n"
    "  UPDATE schedules SET sold_count = sold_count + CASE WHEN NEW.status = 'SOLD' THEN 1 ELSE -1 END\n"
    "    WHERE id = NEW.schedule_id;\n"
    "  IF NOT FOUND THEN RAISE EXCEPTION 'seat %/% has no schedule', NEW.schedule_id, NEW.seat_no; END IF;\n"
    "  RETURN NULL;\n"
    "END\n"
    "$fn$;"
    "CREATE TRIGGER seats_sold_count AFTER UPDATE OF status ON seats FOR EACH ROW"
    "  WHEN ((OLD.status = 'SOLD') <> (NEW.status = 'SOLD')) EXECUTE FUNCTION bx_seats_sold_count();"
    "CREATE INDEX seats_held_by_schedule ON seats(schedule_id, hold_expires_at) WHERE status = 'HELD';",

    /* 3: writes that arrive together share one transaction (bx_write_batch), seat
     * changes are announced to every instance (channel bx_seats), and a sale no
     * longer updates its schedule's row.
     *
     * sold_count. Migration 2's trigger made every sale update its schedule's row,
     * so concurrent transactions selling seats of one date serialized on that row
     * until commit. The trigger and its function go; the available count is
     * computed from the seats where it is still needed (store_pg.c: SCHED_COLS,
     * audit, counts), by a range of the partial index seats_sold_by_schedule. The
     * column schedules.sold_count stays, UNMAINTAINED from this migration on, and
     * nothing of this binary reads it: an instance of the previous binary still
     * running during a rolling upgrade reads it (its date lists then show sold
     * seats as available until it stops) instead of failing on a missing column;
     * and dropping it here would need ACCESS EXCLUSIVE on schedules and on seats
     * in one transaction, which deadlocks with whichever of a sale in flight
     * (seats, then schedules through the trigger) or a hold or a reader
     * (schedules, then seats) it meets. This migration locks one table, seats
     * (DROP TRIGGER, first), and waits for nobody who waits for it. A later
     * migration may drop the column in one statement once no binary older than 3
     * runs: by then nothing takes seats before schedules.
     *
     * Lock order from this migration on: user rows (by id), then seat rows (by
     * schedule_id, seat_no), then reservation rows; no write locks a schedule
     * row. Why no two writers can deadlock, batches of many writes included:
     *   - bx_write_batch locks every user row of its items first, in one
     *     statement, in id order (LockRows over an id-ordered scan), then every
     *     seat row its items touch, in one statement, in (schedule_id, seat_no)
     *     order (LockRows above the Sort), and only then runs the items. A hold
     *     names its seat; a pay or a cancel reaches its seat through the
     *     reservation (id and user), read after the user lock: a reservation of
     *     that user is only ever created under that user's lock, so none appears
     *     later, and a reservation never changes seat.
     *   - Each item's function (bx_hold, bx_pay, bx_cancel, bx_charge) then only
     *     re-locks rows the batch holds, so it never waits: an item whose user row
     *     was not there to lock is answered without its function (NOT_FOUND,
     *     RESERVATION_NOT_FOUND, as the function answers an unknown user), and a
     *     hold whose seat row was not there to lock (a schedule created since)
     *     calls bx_hold with seat NULL, which finds no seat: SEAT_NOT_FOUND.
     *   - The single functions lock at most one user row, then one seat row: the
     *     same order. bx_sweep never waits for a seat (SKIP LOCKED).
     *   - A reservation row is only ever updated by a transaction holding its
     *     seat's row lock, so nobody waits for a reservation lock.
     *   - Other waits are unique-index insertions of a concurrent transaction's
     *     key: an idempotency key (user_id, ...) only under that user's lock; one
     *     CONFIRMED reservation per seat and one payment per reservation only under
     *     that seat's lock. Foreign-key checks take FOR KEY SHARE, which no FOR NO
     *     KEY UPDATE conflicts with.
     * So a transaction only ever waits for a row ordered after every row it
     * holds, and a cycle of waits would need a row ordered after itself.
     *
     * Seat-change notifications. Every transaction of bx_write_batch or bx_sweep
     * that changed seat rows calls pg_notify('bx_seats', payload) before it
     * commits, once per 7,900 bytes of changes (PostgreSQL's limit is 8,000).
     * They are delivered only if it commits, after every notification of the
     * transactions that committed before it, the notifications of one
     * transaction together and in the order sent. Grammar (ABNF):
     *   payload     = change *( ";" change )
     *   change      = schedule-id "," seat-no "," status "," hold-end
     *   status      = "A" / "H" / "S"       ; AVAILABLE, HELD, SOLD
     *   schedule-id = 1*DIGIT               ; decimal, no sign, no spaces
     *   seat-no     = 1*DIGIT
     *   hold-end    = 1*DIGIT               ; the hold's end (Unix ms) when status is
     *                                       ; "H", else "0"
     * e.g. "12,5,H,1767225900000;12,6,S,0;13,1,A,0". A change is the seat's whole
     * state after the transaction, not a difference: a listener keeps its copy of
     * a schedule's seats and replaces a seat's state by each change, in delivery
     * order. Within one transaction a seat appears at most once (in one of its
     * notifications), in (schedule-id, seat-no) order within a notification. A
     * seat is announced when its row differs (status, reservation, hold end) from
     * when the batch locked it: hold taken, hold taken over, sold, freed by a
     * cancel or by a payment that found its hold ended, freed by the sweeper; a
     * hold taken and cancelled within one batch is not announced. Writes through
     * bx_hold, bx_pay and bx_cancel called alone (the synchronous store: the CLI,
     * tests) do NOT notify: they stay as cheap as before. Announcing costs little
     * CPU (finding and formatting the changed seats, ~2 million instructions for
     * a batch of 50, 3 % of it) but a notifying commit holds PostgreSQL's global
     * notify lock from pre-commit until its commit is flushed, so notifying
     * commits never share a WAL flush: one-row commits from 8 clients ran at
     * 1,900-2,900/s plain and 500-800/s with a pg_notify (fdatasync 0.8 ms on
     * the test machine). Hence one notification per batch, never per write. A
     * listener that may have missed changes (its connection dropped, such
     * writes) reloads the schedule (statement BOARD_LOAD, pg_statements.h). */
    "DROP TRIGGER seats_sold_count ON seats;\n"
    "DROP FUNCTION bx_seats_sold_count();\n"
    "CREATE INDEX seats_sold_by_schedule ON seats(schedule_id) WHERE status = 'SOLD';\n"

    /* Sends text entries (changes of the grammar above, in order) as notifications
     * on channel bx_seats, as many per notification as fit in 7,900 bytes.
     * Returns the number of notifications. */
    "CREATE FUNCTION bx_notify_seats(p_changes text[]) RETURNS integer LANGUAGE plpgsql AS $fn$\n"
    "DECLARE\n"
    "  v_payload text := ''; v_change text; v_sent integer := 0;\n"
    "BEGIN\n"
    "  FOREACH v_change IN ARRAY coalesce(p_changes, '{}') LOOP\n"
    "    IF v_payload = '' THEN\n"
    "      v_payload := v_change;\n"
    "    ELSIF octet_length(v_payload) + 1 + octet_length(v_change) <= 7900 THEN\n"
    "      v_payload := v_payload || ';' || v_change;\n"
    "    ELSE\n"
    "      PERFORM pg_notify('bx_seats', v_payload);\n"
    "      v_sent := v_sent + 1;\n"
    "      v_payload := v_change;\n"
    "    END IF;\n"
    "  END LOOP;\n"
    "  IF v_payload <> '' THEN\n"
    "    PERFORM pg_notify('bx_seats', v_payload);\n"
    "    v_sent := v_sent + 1;\n"
    "  END IF;\n"
    "  RETURN v_sent;\n"
    "END\n"
    "$fn$;\n"

    /* Runs writes (item i = element i of every array, 1-based) in ONE transaction
     * and returns one row per item, in item order; see the lock order and the
     * notifications above. Inputs, NULL where the kind does not use the field:
     *   p_kind     'HOLD' | 'CANCEL' | 'CHARGE' | 'PAY'; anything else is
     *              answered VALIDATION and changes nothing
     *   p_user     every kind
     *   p_now      every kind: the item's clock, Unix ms
     *   p_schedule, p_seat, p_expires (hold end, Unix ms), p_max (seats per user
     *              and schedule)                                       HOLD
     *   p_res      the reservation                               CANCEL, PAY
     *   p_amount   CHARGE: the amount; PAY: the amount expected, -1 or NULL: none
     *   p_concert  PAY: the reservation's concert (for o_live_holds)
     *   p_key, p_hash  CHARGE, PAY: Idempotency-Key and request hash, NULL: none
     *   p_balance_max  CHARGE: BALANCE_LIMIT past this balance (one for all)
     * Outputs (NULL where not listed):
     *   o_code     'OK', 'REPLAY' or the refusal code the item's function returns
     *              ('SEAT_UNAVAILABLE', 'INSUFFICIENT_BALANCE', ...), or
     *              'VALIDATION'; a refused item changed nothing (except what its
     *              function keeps on purpose: a pay that found its hold ended
     *              expires it, HOLD_EXPIRED)
     *   o_id       HOLD OK: the new reservation; PAY OK/REPLAY: the payment
     *   o_concert  HOLD: the schedule's concert; o_price  HOLD OK: the seat's price
     *              (held_at is the item's p_now, expires_at its p_expires)
     *   o_res, o_amount, o_paid_at   PAY OK/REPLAY
     *   o_balance  PAY OK/REPLAY: balance after; CHARGE OK/REPLAY: balance after
     *   o_live_holds  PAY OK: the user's HELD reservations on p_concert live at the
     *              item's p_now, counted when every item has run (what the batch
     *              commits): 0 means the queue token may be released
     * Items run in order, so a later item sees an earlier one's effects (balance,
     * seat limit, a seat one item holds is SEAT_UNAVAILABLE to the next).
     * An item that raises (an inconsistency its function detects, a broken
     * constraint) fails the whole call and nothing commits; the caller then runs
     * each item again alone, and only the item that raises fails. Items do not
     * raise in normal operation, so that retry is the rare path. There is no
     * per-item BEGIN ... EXCEPTION block: each would be a subtransaction,
     * measured (callgrind, instructions of a backend running batches of holds
     * and of pays) at +2 % per item in batches of 10, +4 % in batches of 50 and
     * +11 % in batches of 200: past 64 items that write, the transaction
     * overflows its backend's cache of subtransaction ids, and while it runs
     * every snapshot taken in the cluster must consult pg_subtrans as well. */
    "CREATE FUNCTION bx_write_batch(p_kind text[], p_user bigint[], p_now bigint[], p_schedule bigint[], p_seat integer[],\n"
    "    p_expires bigint[], p_max integer[], p_res bigint[], p_amount bigint[], p_concert bigint[], p_key text[],\n"
    "    p_hash bytea[], p_balance_max bigint)\n"
    "    RETURNS TABLE(o_code text, o_id bigint, o_concert bigint, o_price bigint, o_res bigint, o_amount bigint,\n"
    "                  o_balance bigint, o_paid_at bigint, o_live_holds integer)\n"
    "    LANGUAGE plpgsql AS $fn$\n"
    "DECLARE\n"
    "  n integer := coalesce(array_length(p_kind, 1), 0);\n"
    "  v_user_ok boolean[]; v_seat_ok boolean[];\n"
    "  l_schedule bigint[]; l_seat integer[]; l_status text[]; l_res bigint[]; l_end bigint[];\n"
    "  r_code text[]; r_id bigint[]; r_concert bigint[]; r_price bigint[]; r_res bigint[]; r_amount bigint[];\n"
    "  r_balance bigint[]; r_paid_at bigint[];\n"
    "  v_changes text[];\n"
    "  v_code text; v_id bigint; v_concert bigint; v_price bigint; v_res bigint; v_amount bigint; v_balance bigint;\n"
    "  v_paid_at bigint;\n"
    "BEGIN\n"
    "  IF n = 0 THEN RETURN; END IF;\n"
    "  IF array_length(p_user, 1) IS DISTINCT FROM n OR array_length(p_now, 1) IS DISTINCT FROM n\n"
    "     OR array_length(p_schedule, 1) IS DISTINCT FROM n OR array_length(p_seat, 1) IS DISTINCT FROM n\n"
    "     OR array_length(p_expires, 1) IS DISTINCT FROM n OR array_length(p_max, 1) IS DISTINCT FROM n\n"
    "     OR array_length(p_res, 1) IS DISTINCT FROM n OR array_length(p_amount, 1) IS DISTINCT FROM n\n"
    "     OR array_length(p_concert, 1) IS DISTINCT FROM n OR array_length(p_key, 1) IS DISTINCT FROM n\n"
    "     OR array_length(p_hash, 1) IS DISTINCT FROM n THEN\n"
    "    RAISE EXCEPTION 'bx_write_batch: the input arrays differ in length (% kinds)', n;\n"
    "  END IF;\n"
    "\n"
    "  -- Lock step 1: every user row of the batch, in id order.\n"
    "  WITH locked AS MATERIALIZED (\n"
    "    SELECT u.id FROM users u WHERE u.id = ANY(p_user) ORDER BY u.id FOR NO KEY UPDATE\n"
    "  )\n"
    "  SELECT array_agg(l.id IS NOT NULL ORDER BY x.i) INTO v_user_ok\n"
    "    FROM unnest(p_user) WITH ORDINALITY AS x(user_id, i) LEFT JOIN locked l ON l.id = x.user_id;\n"
    "\n"
    "  -- Lock step 2: every seat row the batch touches, in (schedule_id, seat_no) order.\n"
    "  WITH want AS (\n"
    "    SELECT x.i, x.schedule_id, x.seat_no\n"
    "      FROM unnest(p_kind, p_schedule, p_seat) WITH ORDINALITY AS x(kind, schedule_id, seat_no, i)\n"
    "      WHERE x.kind = 'HOLD'\n"
    "    UNION ALL\n"
    "    SELECT x.i, r.schedule_id, r.seat_no\n"
    "      FROM unnest(p_kind, p_res, p_user) WITH ORDINALITY AS x(kind, res, user_id, i)\n"
    "      JOIN reservations r ON r.id = x.res AND r.user_id = x.user_id\n"
    "      WHERE x.kind IN ('PAY', 'CANCEL')\n"
    /* Each seat row once under LockRows: with an item per row, two items of one
     * seat and a concurrent update of it made EvalPlanQual's recheck return the
     * first item twice and drop the second (PostgreSQL 15). */
    "  ), locked AS MATERIALIZED (\n"
    "    SELECT t.schedule_id, t.seat_no, t.status, t.reservation_id, t.hold_expires_at\n"
    "      FROM (SELECT DISTINCT w.schedule_id, w.seat_no FROM want w) k\n"
    "      JOIN seats t ON t.schedule_id = k.schedule_id AND t.seat_no = k.seat_no\n"
    "      ORDER BY t.schedule_id, t.seat_no FOR NO KEY UPDATE OF t\n"
    "  )\n"
    "  SELECT (SELECT array_agg(l.seat_no IS NOT NULL ORDER BY x.i)\n"
    "            FROM generate_series(1, n) AS x(i) LEFT JOIN want w ON w.i = x.i\n"
    "            LEFT JOIN locked l ON l.schedule_id = w.schedule_id AND l.seat_no = w.seat_no),\n"
    "         array_agg(l.schedule_id ORDER BY l.schedule_id, l.seat_no),\n"
    "         array_agg(l.seat_no ORDER BY l.schedule_id, l.seat_no),\n"
    "         array_agg(l.status ORDER BY l.schedule_id, l.seat_no),\n"
    "         array_agg(l.reservation_id ORDER BY l.schedule_id, l.seat_no),\n"
    "         array_agg(l.hold_expires_at ORDER BY l.schedule_id, l.seat_no)\n"
    "    INTO v_seat_ok, l_schedule, l_seat, l_status, l_res, l_end\n"
    "    FROM locked l;\n"
    "\n"
    "  -- The items, in order, each through its own function; rows they lock are locked already.\n"
    "  FOR i IN 1..n LOOP\n"
    "    v_code := NULL; v_id := NULL; v_concert := NULL; v_price := NULL;\n"
    "    v_res := NULL; v_amount := NULL; v_balance := NULL; v_paid_at := NULL;\n"
    "    IF NOT v_user_ok[i] THEN\n"
    "      v_code := CASE WHEN p_kind[i] IN ('HOLD', 'CHARGE') THEN 'NOT_FOUND'\n"
    "                     WHEN p_kind[i] IN ('PAY', 'CANCEL') THEN 'RESERVATION_NOT_FOUND' ELSE 'VALIDATION' END;\n"
    "    ELSIF p_kind[i] = 'HOLD' THEN\n"
    "      SELECT h.o_code, h.o_id, h.o_concert, h.o_price INTO v_code, v_id, v_concert, v_price\n"
    "        FROM bx_hold(p_user[i], p_schedule[i], CASE WHEN v_seat_ok[i] THEN p_seat[i] END, p_now[i], p_expires[i],\n"
    "                     p_max[i]) h;\n"
    "    ELSIF p_kind[i] = 'PAY' THEN\n"
    "      SELECT y.o_code, y.o_id, y.o_res, y.o_amount, y.o_balance, y.o_paid_at\n"
    "        INTO v_code, v_id, v_res, v_amount, v_balance, v_paid_at\n"
    "        FROM bx_pay(p_user[i], p_res[i], coalesce(p_amount[i], -1), p_now[i], p_key[i], p_hash[i]) y;\n"
    "    ELSIF p_kind[i] = 'CANCEL' THEN\n"
    "      SELECT c.o_code INTO v_code FROM bx_cancel(p_user[i], p_res[i], p_now[i]) c;\n"
    "    ELSIF p_kind[i] = 'CHARGE' THEN\n"
    "      SELECT c.o_code, c.o_balance INTO v_code, v_balance\n"
    "        FROM bx_charge(p_user[i], p_amount[i], p_now[i], p_key[i], p_hash[i], p_balance_max) c;\n"
    "    ELSE\n"
    "      v_code := 'VALIDATION';\n"
    "    END IF;\n"
    "    r_code[i] := v_code; r_id[i] := v_id; r_concert[i] := v_concert; r_price[i] := v_price;\n"
    "    r_res[i] := v_res; r_amount[i] := v_amount; r_balance[i] := v_balance; r_paid_at[i] := v_paid_at;\n"
    "  END LOOP;\n"
    "\n"
    "  -- Every seat whose row changed, as it is now (the rows are still locked).\n"
    "  SELECT array_agg(t.schedule_id || ',' || t.seat_no || ',' || left(t.status, 1) || ',' || coalesce(t.hold_expires_at, 0)\n"
    "                   ORDER BY t.schedule_id, t.seat_no)\n"
    "    INTO v_changes\n"
    "    FROM unnest(l_schedule, l_seat, l_status, l_res, l_end) AS b(schedule_id, seat_no, status, res, hold_end)\n"
    "    JOIN seats t ON t.schedule_id = b.schedule_id AND t.seat_no = b.seat_no\n"
    "    WHERE (t.status, t.reservation_id, t.hold_expires_at) IS DISTINCT FROM (b.status, b.res, b.hold_end);\n"
    "  IF v_changes IS NOT NULL THEN\n"
    "    PERFORM bx_notify_seats(v_changes);\n"
    "  END IF;\n"
    "\n"
    "  RETURN QUERY\n"
    "    SELECT x.code, x.id, x.concert, x.price, x.res, x.amount, x.balance, x.paid_at,\n"
    "           CASE WHEN x.kind = 'PAY' AND x.code = 'OK' THEN\n"
    "             (SELECT count(*) FROM reservations r JOIN schedules s ON s.id = r.schedule_id\n"
    "               WHERE r.user_id = x.user_id AND s.concert_id = x.concert_id AND r.status = 'HELD'\n"
    "                 AND r.expires_at > x.now)::integer\n"
    "           END\n"
    "      FROM unnest(p_kind, p_user, p_now, p_concert, r_code, r_id, r_concert, r_price, r_res, r_amount, r_balance,\n"
    "                  r_paid_at) WITH ORDINALITY\n"
    "           AS x(kind, user_id, now, concert_id, code, id, concert, price, res, amount, balance, paid_at, i)\n"
    "      ORDER BY x.i;\n"
    "END\n"
    "$fn$;\n"

    /* The sweeper of migration 1, which now also announces the seats it freed
     * ("<schedule>,<seat>,A,0", grammar above). */
    "CREATE OR REPLACE FUNCTION bx_sweep(p_now bigint, p_limit integer, OUT o_locked integer, OUT o_expired integer)\n"
    "    LANGUAGE plpgsql AS $fn$\n"
    "DECLARE\n"
    "  v_res bigint[]; v_schedule bigint[]; v_seat integer[]; v_changes text[];\n"
    "BEGIN\n"
    "  WITH batch AS (\n"
    "    SELECT reservation_id FROM seats WHERE status = 'HELD' AND hold_expires_at <= p_now\n"
    "    ORDER BY hold_expires_at LIMIT p_limit FOR NO KEY UPDATE SKIP LOCKED\n"
    "  ), expired AS (\n"
    "    UPDATE reservations r SET status = 'EXPIRED' FROM batch\n"
    "    WHERE r.id = batch.reservation_id AND r.status = 'HELD' AND r.expires_at <= p_now\n"
    "    RETURNING r.id, r.schedule_id, r.seat_no\n"
    "  )\n"
    "  SELECT (SELECT count(*) FROM batch), array_agg(id), array_agg(schedule_id), array_agg(seat_no)\n"
    "    INTO o_locked, v_res, v_schedule, v_seat FROM expired;\n"
    "  WITH freed AS (\n"
    "    UPDATE seats t SET status = 'AVAILABLE', reservation_id = NULL, hold_expires_at = NULL\n"
    "      FROM unnest(v_schedule, v_seat, v_res) AS x(schedule_id, seat_no, res_id)\n"
    "      WHERE t.schedule_id = x.schedule_id AND t.seat_no = x.seat_no\n"
    "        AND t.reservation_id = x.res_id AND t.status = 'HELD'\n"
    "      RETURNING t.schedule_id, t.seat_no\n"
    "  )\n"
    "  SELECT array_agg(f.schedule_id || ',' || f.seat_no || ',A,0' ORDER BY f.schedule_id, f.seat_no) INTO v_changes\n"
    "    FROM freed f;\n"
    "  o_expired := coalesce(array_length(v_res, 1), 0);\n"
    "  IF v_changes IS NOT NULL THEN\n"
    "    PERFORM bx_notify_seats(v_changes);\n"
    "  END IF;\n"
    "END\n"
    "$fn$;",

    /* 4: bx_write_batch decides its items by rounds of set-based SQL instead of
     * one call of bx_hold / bx_pay / bx_cancel / bx_charge per item. Measured on
     * PostgreSQL 15 (2 shared cores, loaded), median of 10 batches of 64 items of
     * 64 distinct users: holds of free seats 14 ms item by item, 8.3 ms in one
     * round; pays of those holds 27.5 ms and 13.5 ms (0.65 ms per hold + pay
     * before, 0.34 ms after). A round costs about 1 ms whatever its size, so a
     * batch of fewer than 4 items, and the rest of a batch once fewer than 4 items
     * come before the next user met again (or a round decided fewer than 4), go
     * item by item as in migration 3.
     *
     * A round runs items v_from .. q - 1 at once: each decided on the state the
     * round starts from (one statement: one snapshot), with the same checks in
     * the same order as the item's function, then written together by data-
     * modifying CTEs. q is the first item whose decision could depend on an
     * earlier item of the round: a second item of one user (balance, seat
     * limit, idempotency keys are per user), a second item on one seat (a pay,
     * a cancel: the seat of its reservation), an item of a user whose hold an
     * earlier item of the round takes over (the taken hold stops counting under
     * that user's seat limit). Items of different users on different seats
     * commute, so a round decides as its items one after the other would; the
     * ids are drawn from the sequences in item order, as the functions' inserts
     * would. After 8 rounds, when an item lacks an input its kind needs, and
     * under boxoffice.write_batch_per_item = on (the differential test of
     * tests/unit/test_store.c runs every batch both ways and compares answers,
     * rows, sequences and notifications), the rest go item by item. Locks,
     * their order and the notifications are those of migration 3, unchanged. */
    WB_HEAD WB4_LOCK2_RESERVATIONS WB_LOCK2_TO_ROUND WB4_ROUND_LOOKUPS WB_ROUND_DECIDE WB_ROUND_WRITES WB4_RES_W_WHERE
    WB_ROUND_END,

    /* 5: bx_write_batch reads rows of reservations, idempotency, payments and
     * ledger per item, by key, whatever plan PostgreSQL cached. The function
     * runs with plan_cache_mode = force_generic_plan (planning its round
     * statement on every call cost more than the round), so each connection
     * plans it once, at its first batch; on a new database that is at the start
     * of the first sale, when those tables are empty. Planned for empty tables,
     * migration 4's function joined the round's items to idempotency and to
     * payments through a Materialize of the whole table, found the seats of pays
     * through a nested loop over all reservations and updated reservations by a
     * scan of all of them: every batch then read every payment, and its cost grew
     * with the sale. auto_explain in the S4 scale-out crowd (bench/profile-so4.sh
     * with PROFILE_EXPLAIN_MS): 440,576 rows removed by join filters in one round
     * of 256 items, 286,669 in one lock step, 247,080 in one update. Migration 5
     * is migration 4 with those reads written so that no plan can join a whole
     * table: each is a LATERAL subquery behind OFFSET 0 (never flattened into a
     * join, so it runs per item on its key: reservation, idempotency key,
     * payment, ledger entry), and the round's update of reservations finds its
     * rows by the ctid those lookups read (a TID scan per row). Which index a
     * lookup uses still depends on the table sizes at planning time (for empty
     * tables all indexes cost the same, and one whose leading column the lookup
     * lacks is read whole): each loop of store/astore_pg.c has the plans of
     * both its connections made again every second. Answers, locks and
     * notifications are migration 4's. */
    WB_HEAD WB5_LOCK2_RESERVATIONS WB_LOCK2_TO_ROUND WB5_ROUND_LOOKUPS WB_ROUND_DECIDE WB5_RES_CTID WB_ROUND_WRITES
    WB5_RES_W_WHERE WB_ROUND_END,
};

#define PG_MIGRATION_COUNT ((int)(sizeof pg_migrations / sizeof pg_migrations[0]))

#endif
