#!/usr/bin/env python3
"""report.py RAW_DIR ROOT [--partial] — turns the raw outputs of bench/run.sh into
bench/results.json, docs/bench-s1.png, docs/bench-s4.png and the results table of
docs/BENCHMARKS.md (between <!-- bench:begin --> and <!-- bench:end -->), and prints
every scenario with its figure, its bar and PASS or FAIL. A bar whose raw figures are
missing or unusable gets a row that says why ("n/a"), never a crash; a figure without
a bar is "info". --partial (a BENCH_ONLY run): the same outputs go to RAW_DIR/../report
instead, so a partial run never overwrites the tree's results. Standard library only."""
import json
import os
import re
import subprocess
import sys

RAW, ROOT = sys.argv[1], sys.argv[2]
PARTIAL = "--partial" in sys.argv[3:]
OUT = os.path.join(os.path.dirname(os.path.abspath(RAW)), "report") if PARTIAL else ROOT
RESULTS = os.path.join(OUT, "results.json") if PARTIAL else os.path.join(ROOT, "bench", "results.json")
DOCS = OUT if PARTIAL else os.path.join(ROOT, "docs")
os.makedirs(DOCS, exist_ok=True)


def raw(name):
    return os.path.join(RAW, name)


def have(*names):
    return all(os.path.exists(raw(n)) for n in names)


def load_json(name):
    with open(raw(name)) as f:
        return json.load(f)


def load_jsonl(name):
    with open(raw(name)) as f:
        return [json.loads(line) for line in f if line.strip()]


def machine():
    m = {}
    with open(raw("machine.txt")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            m[k] = v
    if have("fsync.json"):
        m.update(load_json("fsync.json"))
    return m


def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(name):
    """Requests/sec, latency percentiles (ms), non-2xx count, pool use."""
    with open(raw(name + ".wrk")) as f:
        text = f.read()
    out = {"rps": 0.0, "non2xx": 0, "p50_ms": None, "p99_ms": None}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    for pct in ("50", "90", "99"):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s|m)\b" % pct, text, re.M)
        if m:
            out["p%s_ms" % pct] = round(ms(m.group(1), m.group(2)), 3)
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"pool_used (\d+) of (\d+)", text)
    if m:
        out["pool_used"], out["pool"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"Socket errors:.*", text)
    if m:
        out["socket_errors"] = m.group(0)
    return out


def wrk_sum(name):
    """One wrk per scale-out instance (NAME-1, NAME-2), run at the same time: the sum."""
    parts = [wrk("%s-1" % name), wrk("%s-2" % name)]
    return {"rps": sum(p["rps"] for p in parts), "non2xx": sum(p["non2xx"] for p in parts),
            "p99_ms": max((p["p99_ms"] or 0) for p in parts), "instances": parts}


M = machine()
results = {"machine": M, "scenarios": []}
rows = []  # (id, what, figure, bar, result)


def fmt(v):
    if isinstance(v, float):
        if abs(v) >= 100:
            return "{:,.0f}".format(v)
        return "{:.3g}".format(v)
    if isinstance(v, int):
        return "{:,}".format(v)
    return str(v)


def add(sid, what, figure, unit, bar, ok, detail=None):
    """ok: True/False for a bar, None for a figure without one."""
    res = "info" if ok is None else ("PASS" if ok else "FAIL")
    results["scenarios"].append({"id": sid, "what": what, "figure": figure, "unit": unit, "bar": bar,
                                 "pass": None if ok is None else bool(ok), "result": res, "detail": detail or {}})
    rows.append((sid, what, "%s %s" % (fmt(figure), unit), bar, res))


def na(sid, what, bar, why):
    results["scenarios"].append({"id": sid, "what": what, "figure": None, "unit": "", "bar": bar, "pass": None,
                                 "result": "n/a", "why": why, "detail": {}})
    rows.append((sid, "%s — not computed: %s" % (what, why), "—", bar, "n/a"))


def why_of(e):
    if isinstance(e, FileNotFoundError):
        return "no %s (its part did not run or broke)" % os.path.basename(e.filename or "?")
    if isinstance(e, KeyError):
        return "field %s missing" % e
    if isinstance(e, ZeroDivisionError):
        return "a zero figure to divide by"
    return "%s: %s" % (type(e).__name__, e)


def bar_row(sid, what, bar):
    """Decorator: runs the function at once; any failure becomes an n/a row."""
    def run(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 — every failure must become a row, not a crash
            na(sid, what, bar, why_of(e))
        return fn
    return run


def median_rounds(ratios):
    """Index of the round with the median ratio (3 rounds: the middle one)."""
    return sorted(range(len(ratios)), key=lambda i: ratios[i])[len(ratios) // 2]


def median_of_rounds(round_of):
    """Three (measured, baseline) rounds run back to back, round_of(i) for i = 1..3:
    the round with the median ratio, its two sides, the three ratios in run order and
    the rounds."""
    runs = [round_of(i) for i in (1, 2, 3)]
    ratios = [a["rps"] / b["rps"] if b["rps"] else 0 for a, b in runs]
    k = median_rounds(ratios)
    return runs[k][0], runs[k][1], ratios, runs


def median_pair(prefix):
    """Three (boxoffice, nginx) wrk pairs run back to back (median_of_rounds)."""
    return median_of_rounds(lambda i: (wrk("%s-bx.%d" % (prefix, i)), wrk("%s-nginx.%d" % (prefix, i))))


def pair_note(ratios):
    return "median of %d pairs: %s" % (len(ratios), " / ".join("%.2f" % r for r in ratios))


def pct(values, p):
    """Nearest-rank percentile of a list (None when empty)."""
    if not values:
        return None
    v = sorted(values)
    k = max(1, -(-len(v) * p // 100))
    return v[int(k) - 1]


side = {}  # figures the markdown below the table uses, when they exist

# ---------------------------------------------------------------- S1 embedded


@bar_row("S1", "queue status poll, WAITING tokens: throughput vs nginx", ">= 0.7")
def _():
    s1b, s1n, s1_ratios, s1_runs = median_pair("s1")
    r1 = s1b["rps"] / s1n["rps"] if s1n["rps"] else 0
    side["s1"] = (s1b, s1n)
    add("S1", "queue status poll, WAITING tokens: throughput vs nginx (%d-byte body; %s)" % (
        int(M["s1_bytes"]), pair_note(s1_ratios)),
        round(r1, 3), "x nginx", ">= 0.7", r1 >= 0.7 and all(b["non2xx"] == 0 for b, _ in s1_runs),
        {"boxoffice": s1b, "nginx": s1n, "pairs": [{"boxoffice": b, "nginx": n} for b, n in s1_runs]})


@bar_row("S1", "queue status poll: p99 at half of peak", "<= 2 ms")
def _():
    halves = load_jsonl("s1-half.jsonl")
    half = sorted(halves, key=lambda h: h["latency"]["p99_ms"])[len(halves) // 2]  # the median run
    side["s1_half"] = half
    add("S1", "queue status poll: p99 at half of peak (%.0f req/s offered, paced; median of 3 runs: %s ms)" % (
        half["offered_rps"], " / ".join("%.2f" % h["latency"]["p99_ms"] for h in halves)),
        half["latency"]["p99_ms"], "ms", "<= 2 ms", half["latency"]["p99_ms"] <= 2.0 and half["errors"] == 0,
        {"median_run": half, "runs": halves})
    if have("s1-half-nginx.json"):
        side["s1_half_nginx"] = results["s1_half_nginx"] = load_json("s1-half-nginx.json")


if have("s1-bx-info.wrk") and "s1" in side:
    s1i, s1b = wrk("s1-bx-info"), side["s1"][0]
    log_cost = 1 - s1i["rps"] / s1b["rps"] if s1b["rps"] else 0
    results["logging"] = {"warn_rps": s1b["rps"], "info_rps": s1i["rps"], "cost_fraction": round(log_cost, 3)}

# ---------------------------------------------------------------- S2 embedded


@bar_row("S2", "seat map, 50 seats, ACTIVE token: throughput vs nginx", ">= 0.5")
def _():
    s2b, s2n, s2_ratios, s2_runs = median_pair("s2")
    r2 = s2b["rps"] / s2n["rps"] if s2n["rps"] else 0
    side["s2"] = (s2b, s2n)
    add("S2", "seat map, 50 seats, ACTIVE token: throughput vs nginx (%d-byte body; %s)" % (
        int(M["s2_bytes"]), pair_note(s2_ratios)),
        round(r2, 3), "x nginx", ">= 0.5", r2 >= 0.5 and all(b["non2xx"] == 0 for b, _ in s2_runs),
        {"boxoffice": s2b, "nginx": s2n, "pairs": [{"boxoffice": b, "nginx": n} for b, n in s2_runs]})

# ---------------------------------------------------------------- S3


@bar_row("S3", "token issuance, distinct users, embedded", ">= 30,000/s")
def _():
    s3b, s3n = wrk("s3-bx"), wrk("s3-nginx")
    side["s3"] = (s3b, s3n)
    pool_ok = s3b.get("pool_used", 0) <= s3b.get("pool", 0)
    add("S3", "token issuance, distinct users, embedded (%.2fx nginx)" % (s3b["rps"] / s3n["rps"] if s3n["rps"] else 0),
        round(s3b["rps"]), "tokens/s", ">= 30,000/s", s3b["rps"] >= 30000 and s3b["non2xx"] == 0 and pool_ok,
        {"boxoffice": s3b, "nginx": s3n})

# ---------------------------------------------------------------- S1-S3 scale-out


def so_rounds(name, base, base_summed=False):
    """Three rounds of NAME.i (two instances, summed) against BASE.i (one wrk file, or
    two instances summed when base_summed) (median_of_rounds)."""
    base_of = wrk_sum if base_summed else wrk
    return median_of_rounds(lambda i: (wrk_sum("%s.%d" % (name, i)), base_of("%s.%d" % (base, i))))


@bar_row("S1", "queue status poll, scale-out (2 instances): throughput vs nginx", ">= 0.5")
def _():
    so, ng, ratios, runs = so_rounds("s1-so", "s1-so-nginx")
    r = so["rps"] / ng["rps"]
    side["s1_so"] = (so, ng)
    add("S1", "queue status poll, WAITING tokens, scale-out (2 instances, one wrk each, summed; %d-byte body; %s)"
        % (int(M["so_s1_bytes"]), pair_note(ratios)),
        round(r, 3), "x nginx", ">= 0.5", r >= 0.5 and all(a["non2xx"] == 0 for a, _ in runs),
        {"scaleout": so, "nginx": ng, "rounds": [{"scaleout": a, "nginx": b} for a, b in runs]})


@bar_row("S2", "seat map, 50 seats, scale-out (2 instances): throughput vs nginx", "(no bar)")
def _():
    so, ng, ratios, runs = so_rounds("s2-so", "s2-so-nginx")
    r = so["rps"] / ng["rps"]
    side["s2_so"] = (so, ng)
    add("S2", "seat map, 50 seats, ACTIVE tokens, scale-out (2 instances, summed; %d-byte body; %s; %d non-2xx)"
        % (int(M["so_s2_bytes"]), pair_note(ratios), sum(a["non2xx"] for a, _ in runs)),
        round(r, 3), "x nginx", "(no bar)", None,
        {"scaleout": so, "nginx": ng, "rounds": [{"scaleout": a, "nginx": b} for a, b in runs]})


@bar_row("S3", "token issuance, distinct users, scale-out (2 instances, Redis)", ">= 15,000/s")
def _():
    so = [wrk("s3-so1"), wrk("s3-so2")]
    so_rps = sum(w["rps"] for w in so)
    so_ok = all(w["non2xx"] == 0 and w.get("pool_used", 0) <= w.get("pool", 0) for w in so)
    ng = wrk("s3-so-nginx") if have("s3-so-nginx.wrk") else None
    ratio = " (%.2fx nginx)" % (so_rps / ng["rps"]) if ng and ng["rps"] else ""
    add("S3", "token issuance, distinct users, scale-out (2 instances, Redis, --active-max 100)%s" % ratio,
        round(so_rps), "tokens/s", ">= 15,000/s", so_rps >= 15000 and so_ok, {"instances": so, "nginx": ng})

# ---------------------------------------------------------------- S4


def s4_verified(d, v):
    sold_out = d["paid"] >= 20000
    return (v["audit_rc"] == 0 and v["sold"] == v["confirmed"] == v["distinct_seats"] == d["paid"]
            and v["sold_not_confirmed"] == 0 and (not sold_out or v["sold"] == 20000))


def s4(name, bar, label):
    d = load_json(name + ".json")
    v = load_json(name + "-verify.json")
    sold_out = d["paid"] >= 20000
    verified = s4_verified(d, v)
    fig = d["paid_per_s_sustained"]
    add("S4", "flash crowd %s: paid bookings/s (first to %s paid; sell-out %s)" % (
        label, "20,000th" if sold_out else "last",
        "%.1f s" % d["sellout_s"] if d["sellout_s"] > 0 else "not reached in %.0f s" % d["run_s"]),
        round(fig), "paid/s", ">= %s/s" % "{:,}".format(bar), fig >= bar and verified, {"run": d, "verify": v})
    add("S4", "flash crowd %s: seats sold exactly once, audit clean (%d sold, %d confirmed, %d distinct, audit exit %d)"
        % (label, v["sold"], v["confirmed"], v["distinct_seats"], v["audit_rc"]),
        v["sold"], "seats", "= paid answers%s" % (", 20,000" if sold_out else ""), verified, v)


bar_row("S4", "flash crowd embedded", ">= 10,000/s")(lambda: s4("s4-bx", 10000, "embedded"))
bar_row("S4", "flash crowd scale-out", ">= 3,000/s")(lambda: s4("s4-so", 3000, "scale-out"))


@bar_row("S4", "flash crowd embedded: ETA error at p90 (estimates given after 10 s)", "<= 20 %")
def _():
    e = load_json("s4-bx.json")["eta"]
    g = e["given_after"]
    if g["judged"] == 0:
        raise KeyError("given_after (no estimate given after %s s to a user later admitted)" % e["split_s"])
    fig = g["rel_err_pct"]["p90"]
    add("S4", "flash crowd embedded: ETA error at p90 (estimates given after %s s), |estimatedWaitSeconds - real "
        "wait| / real wait over the %s estimates, at issue and at each poll, given once the sale had run %s s to "
        "users later admitted (real wait known to the poll interval; waits under %s s left out: %s)"
        % (e["split_s"], fmt(g["judged"]), e["split_s"], e["min_real_s"], fmt(g["shorter_than_resolution"])),
        fig, "%", "<= 20 %", fig <= 20, e)
if have("pg-alone.json"):  # the scale-out ceiling of this machine's PostgreSQL
    results["pg_alone"] = load_json("pg-alone.json")
if have("s4-core.json", "s4-core-verify.json"):  # a figure per server core, no bar (machines with 2+ cores)
    results["s4_one_core"] = {"run": load_json("s4-core.json"), "verify": load_json("s4-core-verify.json")}


@bar_row("S4", "flash crowd scale-out against PostgreSQL alone", ">= 0.8x")
def _():
    d, p = load_json("s4-so.json"), load_json("pg-alone.json")
    r = d["paid_per_s_sustained"] / p["paid_per_s"]
    add("S4", "flash crowd scale-out against PostgreSQL alone (%s paid/s against pgbench's %s paid/s: one hold and "
        "one pay call per booking, unbatched, %d clients)" % (fmt(d["paid_per_s_sustained"]), fmt(p["paid_per_s"]),
                                                              p["clients"]),
        round(r, 3), "x PostgreSQL alone", ">= 0.8", r >= 0.8, {"scaleout_paid_per_s": d["paid_per_s_sustained"],
                                                                   "pg_alone": p})


@bar_row("S4", "flash crowd scale-out: p99 of every step", "<= 250 ms")
def _():
    d = load_json("s4-so.json")
    steps = {s: v["latency"]["p99_ms"] for s, v in d["steps"].items() if v["count"] > 0}
    worst = max(steps, key=steps.get)
    add("S4", "flash crowd scale-out: p99 of every step (worst: %s; %s)" % (
        worst, ", ".join("%s %.0f" % (s, v) for s, v in steps.items())),
        round(steps[worst], 1), "ms", "<= 250 ms", steps[worst] <= 250, {"p99_ms": steps})


def cpu_row(name, label, bar, limit):
    d = load_json(name + ".json")
    c = d["cpu"]
    if d["paid"] <= 0:
        raise ValueError("no paid booking in %s" % name)
    per = c["total_s"] / d["paid"] * 1000
    machine_per = c["machine_busy_s"] / d["paid"] * 1000
    add("S4", "CPU per paid booking, %s: CPU of the bench's processes over the crowd (%.1f s: %s s of servers, "
        "PostgreSQL and Redis, %s s of the generator) / %s paid; the whole machine's busy time gives %.2f ms "
        "(other users of the machine included)" % (label, c["window_s"], fmt(c["procs_s"]), fmt(c["generator_s"]),
                                                   fmt(d["paid"]), machine_per),
        round(per, 3), "ms", bar, None if limit is None else per <= limit,
        {"cpu": c, "paid": d["paid"], "ms_per_paid": per, "machine_ms_per_paid": machine_per})


bar_row("S4", "CPU per paid booking, embedded", "(no bar)")(lambda: cpu_row("s4-bx", "embedded", "(no bar)", None))
bar_row("S4", "CPU per paid booking, scale-out", "<= 1.0 ms")(lambda: cpu_row("s4-so", "scale-out", "<= 1.0 ms", 1.0))

# ---------------------------------------------------------------- relay


@bar_row("relay", "relay self-check (round trips, pipelining, half-close, order)", "ok")
def _():
    c = load_json("relay-check.json")
    add("relay", "relay self-check at %.0f us each way: SELECT 1 %.3f -> %.3f ms, Redis PING %.3f -> %.3f ms "
        "(ideal +%.3f); 10 pipelined statements %.3f ms; 1 MiB in order %s; half-close passed %s%s" % (
            c["delay_us"], c["pg_select1"]["direct_ms"], c["pg_select1"]["relayed_ms"],
            c["redis_ping_p50"]["direct_ms"], c["redis_ping_p50"]["relayed_ms"], c["ideal_added_ms"],
            c["pg_pipeline_10_ms"], "yes" if c["bytes_in_order_1mib"] else "NO",
            "yes" if c["half_close_passed_both_ways"] else "NO",
            "; " + "; ".join(c["why"]) if c["why"] else ""),
        c["pg_select1"].get("added_ms", 0), "ms added", "2 x delay (-10 %, +0.5 ms)", c["ok"], c)


@bar_row("S1", "queue status poll, scale-out, through the relays: throughput vs straight", ">= 0.75")
def _():
    rl, so, ratios, runs = so_rounds("s1-relay", "s1-so", base_summed=True)
    r = rl["rps"] / so["rps"]
    add("S1", "queue status poll, scale-out, PostgreSQL and Redis %s us away each way: relayed %s vs straight %s req/s "
        "(%s)" % (M["relay_delay_us"], fmt(rl["rps"]), fmt(so["rps"]), pair_note(ratios)),
        round(r, 3), "x straight", ">= 0.75", r >= 0.75 and all(a["non2xx"] == 0 for a, _ in runs),
        {"relayed": rl, "straight": so, "rounds": [{"relayed": a, "straight": b} for a, b in runs]})


@bar_row("S4", "flash crowd scale-out through the relays: paid/s vs straight", ">= 0.75")
def _():
    d, v = load_json("s4-relay.json"), load_json("s4-relay-verify.json")
    s = load_json("s4-so.json")
    if s["paid"] < 1000:  # a sale that never got going: the ratio of two such runs is noise
        raise ValueError("the straight crowd paid only %d bookings (< 1,000): no rate to compare with" % s["paid"])
    r = d["paid_per_s_sustained"] / s["paid_per_s_sustained"]
    ok = s4_verified(d, v)
    side["s4_relay"] = d
    add("S4", "flash crowd scale-out, PostgreSQL and Redis %s us away each way: %s vs %s paid/s straight (relayed "
        "sale: %d paid, %d sold, audit exit %d%s)" % (
            M["relay_delay_us"], fmt(d["paid_per_s_sustained"]), fmt(s["paid_per_s_sustained"]), d["paid"], v["sold"],
            v["audit_rc"], "" if ok else ", NOT VERIFIED"),
        round(r, 3), "x straight", ">= 0.75", r >= 0.75 and ok, {"relayed": d, "verify": v,
                                                                  "straight_paid_per_s": s["paid_per_s_sustained"]})

# ---------------------------------------------------------------- frozen PostgreSQL


def frozen_data():
    """The probe log, with times relative to the freeze: (rows, events, window)."""
    ev = load_json("frozen-events.json")
    summary = load_json("frozen.json")
    t0 = summary["t0_unix"]
    rows_ = []
    with open(raw("frozen.log")) as f:
        for line in f:
            k, tg, due, sent, done, st = line.split()
            rows_.append({"kind": k, "target": int(tg), "due": float(due) + t0, "sent": float(sent) + t0,
                          "done": float(done) + t0 if float(done) >= 0 else None, "status": int(st)})
    return rows_, ev, summary


BOOKING = ("seats", "hold", "pay")
CHAIN = ("issue",) + BOOKING + ("leave",)


@bar_row("frozen", "PostgreSQL frozen: /healthz and WAITING status probes, p99", "<= 50 ms")
def _():
    rows_, ev, _s = frozen_data()
    lo, hi = ev["frozen"], ev["thaw_begin"]
    probes = [r for r in rows_ if r["kind"] in ("healthz", "status") and lo <= r["due"] < hi]
    if not probes:
        raise ValueError("no probe fell inside the freeze")
    lat = [((r["done"] if r["done"] is not None else hi + 60) - r["due"]) * 1000 for r in probes]
    bad = [r for r in probes if r["status"] != 200]
    per_kind = {}
    for k in ("healthz", "status"):
        kl = [((r["done"] if r["done"] is not None else hi + 60) - r["due"]) * 1000 for r in probes if r["kind"] == k]
        per_kind[k] = {"n": len(kl), "p50_ms": pct(kl, 50), "p99_ms": pct(kl, 99), "max_ms": max(kl) if kl else None}
    p99, mx = pct(lat, 99), max(lat)
    side["frozen_probes"] = per_kind
    add("frozen", "PostgreSQL frozen %.1f s under 2 instances (--threads 2): %d probes on fresh connections due in it "
        "(healthz p99 %.1f ms, WAITING status p99 %.1f ms), max %.1f ms, %d not 200" % (
            hi - lo, len(probes), per_kind["healthz"]["p99_ms"] or 0, per_kind["status"]["p99_ms"] or 0, mx, len(bad)),
        round(p99, 2), "ms", "<= 50 ms", p99 <= 50 and not bad,
        {"n": len(probes), "p50_ms": pct(lat, 50), "p99_ms": p99, "max_ms": mx, "not_200": len(bad),
         "per_kind": per_kind})


@bar_row("frozen", "PostgreSQL frozen: booking calls answered within their bound", "<= bound")
def _():
    rows_, ev, _s = frozen_data()
    lo, hi, bound = ev["frozen"], ev["thaw_begin"], float(ev["bound_ms"])
    # every request of the booking load in flight at some moment of the freeze: sent
    # before its end, answered (or not at all) after its start
    calls = [r for r in rows_ if r["kind"] in CHAIN and r["sent"] < hi and (r["done"] is None or r["done"] > lo)]
    if not calls:
        raise ValueError("no booking request was in flight during the freeze")
    statuses = {}
    for r in calls:
        key = "%s %s" % (r["kind"], r["status"] if r["status"] > 0 else ("unanswered" if r["status"] < 0 else "conn"))
        statuses[key] = statuses.get(key, 0) + 1
    lat = [((r["done"] if r["done"] is not None else float("inf")) - r["sent"]) * 1000 for r in calls]
    lat503 = [x for r, x in zip(calls, lat) if r["status"] == 503]
    over = sum(1 for x in lat if x > bound)
    lost = sum(1 for r in calls if r["status"] <= 0)
    # holds tried while nothing of PostgreSQL could run: without them the path was not exercised
    holds = sum(1 for r in calls if r["kind"] == "hold" and r["sent"] >= lo)
    # a hold or payment sent during the freeze and acknowledged before its end: nothing could commit it
    acked = sum(1 for r in calls if r["kind"] in ("hold", "pay") and 200 <= r["status"] < 300 and r["sent"] >= lo
                and r["done"] is not None and r["done"] < hi)
    mx = max(lat)
    add("frozen", "PostgreSQL frozen: the booking load's requests in flight during it (%d; %s); 503 after p50 %s / "
        "max %s ms; %d over the bound, %d without an answer, %d holds sent while frozen, %d holds/payments "
        "acknowledged while frozen" % (
            len(calls), ", ".join("%s: %d" % kv for kv in sorted(statuses.items())),
            fmt(pct(lat503, 50)) if lat503 else "-", fmt(max(lat503)) if lat503 else "-", over, lost, holds, acked),
        round(mx, 1) if mx != float("inf") else "never", "ms (slowest)", "<= %s ms" % fmt(int(bound)),
        over == 0 and lost == 0 and acked == 0 and holds > 0,
        {"calls": len(calls), "statuses": statuses, "p99_ms": pct(lat, 99), "max_ms": mx if mx != float("inf") else None,
         "over_bound": over, "unanswered": lost, "holds_sent_while_frozen": holds, "acked_while_frozen": acked,
         "bound_ms": bound})


@bar_row("frozen", "PostgreSQL thawed: booking succeeds again, no restart", "<= recover_s")
def _():
    rows_, ev, _s = frozen_data()
    th, rec = ev["thawed"], float(ev["recover_s"])
    after = [r for r in rows_ if r["kind"] == "pay" and r["sent"] >= th and 200 <= r["status"] < 300]
    first = min(r["done"] for r in after) - th if after else None
    late = [r for r in rows_ if r["kind"] in BOOKING and r["sent"] >= th + rec]
    late_bad = sum(1 for r in late if r["status"] <= 0 or r["status"] >= 500)
    ready = ev["readyz"].split()
    ok = (first is not None and first <= rec and late_bad == 0 and ev["alive"] == 1
          and all(x == "200" for x in ready) and ev["audit_rc"] == 0)
    add("frozen", "PostgreSQL thawed: first payment sent after the thaw paid %s after it; %d of %d booking calls "
        "sent from %.0f s on failed (5xx or lost); instances alive (not restarted) %s, readyz %s; audit exit %d" % (
            "%.2f s" % first if first is not None else "never", late_bad, len(late), rec,
            "yes" if ev["alive"] == 1 else "NO", "/".join(ready) or "-", ev["audit_rc"]),
        round(first, 2) if first is not None else "never", "s", "<= %s s" % fmt(rec), ok,
        {"first_paid_after_thaw_s": first, "late_calls": len(late), "late_failed": late_bad, "events": ev})

# ---------------------------------------------------------------- S5


@bar_row("S5", "embedded, one million waiting users", "<= 64 B, <= 30 s, flat")
def _():
    s5 = load_json("s5.json")
    cps = s5["checkpoints"]
    last = cps[-1]
    per_user = (last["rss_kib"] - s5["rss0_kib"]) * 1024.0 / last["issued"]
    add("S5", "resident memory per waiting user (VmRSS growth / %s tokens)" % "{:,}".format(last["issued"]),
        round(per_user, 1), "bytes", "<= 64 B", per_user <= 64, {"rss0_kib": s5["rss0_kib"], "rss_kib": last["rss_kib"]})
    add("S5", "issuing the million (HTTP, 64 connections, %.0f tokens/s)" % s5["issue_per_s"], round(s5["issue_s"], 1),
        "s", "<= 30 s", s5["issue_s"] <= 30 and last["other"] == 0, {"issue_per_s": s5["issue_per_s"]})
    # flat: the lookup at the largest queue costs at most 1.5x the cheapest checkpoint
    # (the cheapest, not the first: the first probe runs seconds after start-up and is noisy)
    p_min, p_last = min(c["probe"]["p50_ms"] for c in cps), cps[-1]["probe"]["p50_ms"]
    flat = p_last / p_min if p_min else 99
    curve = ", ".join("%s: %.0f us" % ("{:,}".format(c["issued"]), c["probe"]["p50_ms"] * 1000) for c in cps)
    add("S5", "position lookup (status of the last token) p50, 1k -> 1M waiting: %s" % curve, round(flat, 2),
        "x (1M / cheapest)", "flat: <= 1.5x", flat <= 1.5,
        {"curve": [{"waiting": c["issued"], "probe": c["probe"]} for c in cps]})


# ---------------------------------------------------------------- plots
s1sweep = load_jsonl("s1-sweep.jsonl") if have("s1-sweep.jsonl") else []
s4sweep = load_jsonl("s4-sweep.jsonl") if have("s4-sweep.jsonl") else []
results["s1_sweep"] = s1sweep
results["s4_sweep"] = [{k: p[k] for k in ("offered_users_per_s", "paid", "run_s", "paid_per_s_sustained")} |
                       {"p99_ms": {s: p["steps"][s]["latency"]["p99_ms"] for s in p["steps"]}} for p in s4sweep]
plot_ok = False
if s1sweep and s4sweep and "s1" in side:
    with open(raw("s1-sweep.dat"), "w") as f:
        for p in s1sweep:
            f.write("%.0f %.0f %.3f %.3f\n" % (p["offered_rps"], p["achieved_rps"], p["latency"]["p50_ms"],
                                               p["latency"]["p99_ms"]))
    with open(raw("s4-sweep.dat"), "w") as f:
        for p in s4sweep:
            st = p["steps"]
            f.write("%d %.0f %.3f %.3f %.3f\n" % (p["offered_users_per_s"], p["paid_per_s_sustained"],
                                                   st["hold"]["latency"]["p99_ms"], st["pay"]["latency"]["p99_ms"],
                                                   st["issue"]["latency"]["p99_ms"]))
    try:
        subprocess.run(["gnuplot", "-e", "raw='%s'; docs='%s'; nginx=%f" % (RAW, DOCS, side["s1"][1]["rps"]),
                        os.path.join(ROOT, "bench", "plot.gp")], check=True)
        plot_ok = True
    except (OSError, subprocess.CalledProcessError) as e:
        print("report: gnuplot failed: %s" % e, file=sys.stderr)

# ---------------------------------------------------------------- outputs
with open(RESULTS, "w") as f:
    json.dump(results, f, indent=1)
    f.write("\n")


def steps_table(d):
    out = ["| step | requests | errors | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    for s, v in d["steps"].items():
        out.append("| %s | %s | %d | %.2f | %.2f |" % (s, fmt(v["count"]), v["errors"], v["latency"]["p50_ms"],
                                                    v["latency"]["p99_ms"]))
    return "\n".join(out)


def paragraph(fn):
    """A paragraph of the markdown whose figures may be missing: skipped then."""
    try:
        text = fn()
    except (OSError, KeyError, ValueError, ZeroDivisionError, TypeError):
        return
    if text:
        md.append("")
        md.append(text)


md = []
md.append("Run of %s on %s: %s cores (%s), %s GiB, kernel %s, %s; nginx %s, wrk %s; "
          "commit %s, boxoffice %s. Disk: fdatasync p50 %.2f ms, p99 %.2f ms. Load average %s at the start, "
          "%s at the end (the machine is shared: expect +-30 %% between runs). Whole run: %s s.%s"
          % (M["date"], M["os"], M["nproc"], M["model"], M["mem_gib"], M["kernel"], "loopback",
             M["nginx"], M["wrk"], M["commit"], M["build"], M.get("fdatasync_p50_ms", 0), M.get("fdatasync_p99_ms", 0),
             M["loadavg_start"], M.get("loadavg_end", "?"), M.get("total_s", "?"),
             " Partial run (BENCH_ONLY=%s)." % M["bench_only"] if M.get("bench_only") else ""))
md.append("")
md.append("| scenario | what | figure | bar | result |")
md.append("|---|---|---:|---|---|")
for r in rows:
    md.append("| %s | %s | %s | %s | **%s** |" % r)


def side_embedded():
    s1b, s1n = side["s1"]
    s2b, s2n = side["s2"]
    s3n = side["s3"][1]
    lg = results["logging"]
    return ("Side figures: S1 boxoffice %s req/s vs nginx %s req/s (wrk p99 %s ms vs %s ms); "
            "S2 %s vs %s req/s; S3 nginx %s req/s for a %s-byte body; "
            "`--log-level info` costs %.0f %% of S1 throughput (%s vs %s req/s)."
            % (fmt(s1b["rps"]), fmt(s1n["rps"]), s1b["p99_ms"], s1n["p99_ms"], fmt(s2b["rps"]), fmt(s2n["rps"]),
               fmt(s3n["rps"]), M["s3_bytes"], 100 * lg["cost_fraction"], fmt(lg["info_rps"]), fmt(lg["warn_rps"])))


def side_half():
    half_n, half = side["s1_half_nginx"], side["s1_half"]
    return ("Control for the S1 latency bar: nginx paced at the same %s req/s by the same load generator: "
            "p50 %.3f ms, p99 %.3f ms (boxoffice: p50 %.3f ms, p99 %.3f ms). When nginx shows the same tail, "
            "the tail comes from the machine (CPU shared with the load generator and other work), not from "
            "boxoffice." % (fmt(half_n["offered_rps"]), half_n["latency"]["p50_ms"], half_n["latency"]["p99_ms"],
                            half["latency"]["p50_ms"], half["latency"]["p99_ms"]))


def side_scaleout():
    so1, ng1 = side["s1_so"]
    out = ("Scale-out S1/S2 (two instances x `--threads %s`, `--active-max 100`, one `wrk -t1 -c32` per instance at "
           "the same time, summed, against `wrk -t2 -c64` on nginx with bodies of the scale-out answers' sizes; %s s "
           "each): S1 %s req/s (%s + %s) vs nginx %s req/s"
           % (M["so_threads"], M["so_dur"], fmt(so1["rps"]), fmt(so1["instances"][0]["rps"]),
              fmt(so1["instances"][1]["rps"]), fmt(ng1["rps"])))
    if "s2_so" in side:
        so2, ng2 = side["s2_so"]
        out += "; S2 %s vs %s req/s" % (fmt(so2["rps"]), fmt(ng2["rps"]))
    return out + "."


def s4_embedded():
    s4b = load_json("s4-bx.json")
    first = s4b["first_paid_s"] if s4b["first_paid_s"] > 0 else 0
    nth_arrives = 20000 * s4b["arrival_s"] / s4b["users"]
    out = ("S4 embedded (`--active-max %s`, 1,000 connections): %s users arrived, %s admitted, %s paid, "
           "%s holds refused (seat taken), %s still waiting at the end, run %.1f s, peak %s paid/s over 1 s."
           % (M["s4_active_max"], fmt(s4b["arrived"]), fmt(s4b["admitted"]), fmt(s4b["paid"]),
              fmt(s4b["holds_refused"]), fmt(s4b["still_waiting"]), s4b["run_s"], fmt(s4b["paid_per_s_peak_1s"])))
    out += ("\n\nThe sustained figure cannot exceed the arrival rate: the 20,000th buyer arrives %.1f s into the run, "
            "so even with every arrival buying at once the 20,000th payment comes %.2f s after the first one (%.3f s), "
            "a ceiling of %s paid/s at this arrival rate." % (nth_arrives, nth_arrives - first, first,
                                                             fmt(20000 / max(nth_arrives - first, 1e-9))))
    if "s4_one_core" in results:
        c, cv = results["s4_one_core"]["run"], results["s4_one_core"]["verify"]
        out += ("\n\nPer core: the same crowd with the server pinned to one CPU (`--threads 1`) and the load generator "
                "to the other sold %s seats at %s paid/s sustained (sell-out %.1f s, peak %s paid/s over 1 s; %s "
                "admitted, %s holds refused; %d sold, audit exit %d)."
                % (fmt(c["paid"]), fmt(c["paid_per_s_sustained"]), c["sellout_s"], fmt(c["paid_per_s_peak_1s"]),
                   fmt(c["admitted"]), fmt(c["holds_refused"]), cv["sold"], cv["audit_rc"]))
    return out + "\n\n" + steps_table(s4b)


def s4_scaleout():
    s4s = load_json("s4-so.json")
    out = ("S4 scale-out (2 instances x `--threads %s`, `--active-max %s`, 2 x 500 connections, capped at %s s): %s "
           "arrived, %s admitted, %s paid, %s holds refused, %s still waiting, run %.1f s, peak %s paid/s over 1 s."
           % (M["so_threads"], M["s4_active_max"], M.get("s4_so_max_time", "?"), fmt(s4s["arrived"]),
              fmt(s4s["admitted"]), fmt(s4s["paid"]), fmt(s4s["holds_refused"]), fmt(s4s["still_waiting"]),
              s4s["run_s"], fmt(s4s["paid_per_s_peak_1s"])))
    if "pg_alone" in results:
        p = results["pg_alone"]
        out += ("\n\nFor scale: PostgreSQL alone on this machine (pgbench calling the same hold and pay functions, one "
                "commit each, %d clients, nothing else running: no HTTP, no queue, no seat maps, no date lists) sold "
                "%s seats in %.1f s, %s paid/s (%s attempts, the rest on seats already taken)."
                % (p["clients"], fmt(p["paid"]), p["seconds"], fmt(p["paid_per_s"]), fmt(p["attempts"])))
    return out + "\n\n" + steps_table(s4s)


def s4_relay():
    d = load_json("s4-relay.json")
    rl = ""
    for n in ("pg", "redis"):
        if have("relay-%s.log" % n):
            with open(raw("relay-%s.log" % n)) as f:
                js = [json.loads(line) for line in f if line.startswith("{")]
            if js:
                r = js[-1]["relay"]
                rl += " The %s relay over the whole run: %s connections, %s chunks, written %.0f us late on average " \
                      "(max %.1f ms)." % ("PostgreSQL" if n == "pg" else "Redis", fmt(r["connections"]),
                                          fmt(r["chunks"]), r["late_mean_us"], r["late_max_us"] / 1000)
    return ("S4 scale-out through the relays (%s us each way to PostgreSQL and to Redis): %s arrived, %s admitted, "
            "%s paid, run %.1f s, %s paid/s sustained.%s\n\n%s"
            % (M["relay_delay_us"], fmt(d["arrived"]), fmt(d["admitted"]), fmt(d["paid"]), d["run_s"],
               fmt(d["paid_per_s_sustained"]), rl, steps_table(d)))


def s4_eta():
    out = ["S4 estimated wait (`estimatedWaitSeconds`) against the real wait: for every WAITING answer (at issue "
           "and at each poll) to a user later admitted, the real wait is the time from that answer to the first "
           "answer that said ACTIVE. The real wait is only known to the poll interval (`pollAfterMs`: a quarter of "
           "the estimate, at least 1 s), so waits under 1 s are left out and a few seconds' error is resolution: "
           "the last column counts only how far the estimate lies outside the span in which the admission "
           "happened (after the user's last WAITING answer, before the ACTIVE one). "
           "\"At issue\" splits users by when their token was issued, \"every estimate\" splits the estimates by "
           "when they were given; the S4 crowd arrives within 10 s, so few users are issued later.", "",
           "| run | estimates | when | judged | under 1 s | never admitted | p50 % | p90 % | p99 % | p50 s | p90 s |"
           " p99 s | p90 % beyond resolution |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    n = 0
    for name, label in (("s4-bx", "embedded"), ("s4-so", "scale-out")):
        if not have(name + ".json"):
            continue
        e = load_json(name + ".json").get("eta")
        if not e:
            continue
        for key, what, when in (("issued_before", "at issue", "issued < %s s"), ("issued_after", "at issue",
                                                                                  "issued >= %s s"),
                                ("given_before", "every estimate", "given < %s s"),
                                ("given_after", "every estimate", "given >= %s s")):
            g = e[key]
            r, a = g["rel_err_pct"], g["abs_err_s"]
            cell = (lambda v, f: "—" if g["judged"] == 0 else f % v)
            b = g.get("rel_err_beyond_resolution_pct", {"p90": None})
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                label, what, when % e["split_s"], fmt(g["judged"]), fmt(g["shorter_than_resolution"]),
                fmt(g["never_admitted"]), cell(r["p50"], "%.0f"), cell(r["p90"], "%.0f"), cell(r["p99"], "%.0f"),
                cell(a["p50"], "%.1f"), cell(a["p90"], "%.1f"), cell(a["p99"], "%.1f"),
                "—" if b["p90"] is None else cell(b["p90"], "%.0f")))
            n += 1
    return "\n".join(out) if n else None


def frozen_text():
    s = load_json("frozen.json")
    ev = load_json("frozen-events.json")
    req = s["requests"]
    return ("Frozen PostgreSQL: %s probes and %s booking attempts (%s/s) over %.0f s, PostgreSQL stopped for %.1f s "
            "from %.1f s; answers by kind (ok / other / connection failed): %s; %s not admitted at once (left the "
            "queue), %s unanswered at the end."
            % (fmt(s["probes"]), fmt(s["chains"]), M.get("frozen_book_rate", "?"), s["duration_s"],
               ev["thaw_begin"] - ev["frozen"], ev["frozen"] - s["t0_unix"],
               ", ".join("%s %d/%d/%d" % (k, v["ok"], v["other"], v["conn_failed"]) for k, v in req.items()),
               fmt(s["not_admitted"]), fmt(s["unanswered"])))


for fn in (side_embedded, side_half, side_scaleout, s4_embedded, s4_eta, s4_scaleout, s4_relay, frozen_text):
    paragraph(fn)
if s1sweep:
    md.append("")
    md.append("S1 offered load (paced, 64 connections, latency from the moment each request was due):")
    md.append("")
    md.append("| offered req/s | achieved req/s | p50 ms | p99 ms |")
    md.append("|---:|---:|---:|---:|")
    for p in s1sweep:
        md.append("| %s | %s | %.3f | %.3f |" % (fmt(p["offered_rps"]), fmt(p["achieved_rps"]),
                                               p["latency"]["p50_ms"], p["latency"]["p99_ms"]))
if s4sweep:
    md.append("")
    md.append("S4 offered load (embedded, users arriving per second for 5 s, fresh database each point, 12 s cap):")
    md.append("")
    md.append("| users/s | paid | paid/s (first to last payment) | p99 issue ms | p99 hold ms | p99 pay ms |")
    md.append("|---:|---:|---:|---:|---:|---:|")
    for p in s4sweep:
        st = p["steps"]
        md.append("| %s | %s | %s | %.1f | %.1f | %.1f |" % (
            fmt(p["offered_users_per_s"]), fmt(p["paid"]), fmt(p["paid_per_s_sustained"]),
            st["issue"]["latency"]["p99_ms"], st["hold"]["latency"]["p99_ms"], st["pay"]["latency"]["p99_ms"]))
md.append("")
if plot_ok:
    md.append("![S1 throughput and latency against offered load](bench-s1.png)")
    md.append("![S4 throughput and latency against offered load](bench-s4.png)")
table = "\n".join(md)

if PARTIAL:
    with open(os.path.join(OUT, "BENCHMARKS-table.md"), "w") as f:
        f.write(table + "\n")
else:
    doc = os.path.join(ROOT, "docs", "BENCHMARKS.md")
    with open(doc) as f:
        text = f.read()
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    if begin in text and end in text:
        text = text[:text.index(begin) + len(begin)] + "\n" + table + "\n" + text[text.index(end):]
    else:
        text = text.rstrip("\n") + "\n\n## Results of the last run\n\n" + begin + "\n" + table + "\n" + end + "\n"
    with open(doc, "w") as f:
        f.write(text)

print()
print("%-6s %-22s %-16s %-5s %s" % ("", "figure", "bar", "", "what"))
for sid, what, figure, bar, res in rows:
    print("%-6s %-22s %-16s %-5s %s" % (sid, figure, bar, res, what))
nbars = sum(1 for r in rows if r[4] in ("PASS", "FAIL"))
npass = sum(1 for r in rows if r[4] == "PASS")
nna = sum(1 for r in rows if r[4] == "n/a")
print("bench: %d of %d bars pass%s; %s and %s written" % (
    npass, nbars, ", %d not computed" % nna if nna else "", RESULTS,
    os.path.join(OUT, "BENCHMARKS-table.md") if PARTIAL else "docs/BENCHMARKS.md"))
