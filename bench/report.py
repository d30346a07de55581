#!/usr/bin/env python3
"""report.py RAW_DIR ROOT — turns the raw outputs of bench/run.sh into
bench/results.json, docs/bench-s1.png, docs/bench-s4.png and the results table of
docs/BENCHMARKS.md (between <!-- bench:begin --> and <!-- bench:end -->), and prints
every scenario with its figure, its bar and PASS or FAIL. Standard library only."""
import json
import os
import re
import subprocess
import sys

RAW, ROOT = sys.argv[1], sys.argv[2]


def raw(name):
    return os.path.join(RAW, name)


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


M = machine()
results = {"machine": M, "scenarios": []}
rows = []  # (id, what, figure, bar, pass)


def add(sid, what, figure, unit, bar, ok, detail=None):
    results["scenarios"].append({"id": sid, "what": what, "figure": figure, "unit": unit, "bar": bar,
                                 "pass": bool(ok), "detail": detail or {}})
    rows.append((sid, what, "%s %s" % (fmt(figure), unit), bar, "PASS" if ok else "FAIL"))


def fmt(v):
    if isinstance(v, float):
        if abs(v) >= 100:
            return "{:,.0f}".format(v)
        return "{:.3g}".format(v)
    if isinstance(v, int):
        return "{:,}".format(v)
    return str(v)


def median_pair(prefix):
    """Three (boxoffice, nginx) wrk pairs run back to back: the pair with the median
    ratio, and the three ratios in run order."""
    runs = [(wrk("%s-bx.%d" % (prefix, i)), wrk("%s-nginx.%d" % (prefix, i))) for i in (1, 2, 3)]
    ratios = [b["rps"] / n["rps"] if n["rps"] else 0 for b, n in runs]
    k = sorted(range(3), key=lambda i: ratios[i])[1]
    return runs[k][0], runs[k][1], ratios, runs


def pair_note(ratios):
    return "median of 3 pairs: %s" % " / ".join("%.2f" % r for r in ratios)


# ---------------------------------------------------------------- S1
s1b, s1n, s1_ratios, s1_runs = median_pair("s1")
s1i = wrk("s1-bx-info")
halves = load_jsonl("s1-half.jsonl")
half = sorted(halves, key=lambda h: h["latency"]["p99_ms"])[len(halves) // 2]  # the median run
r1 = s1b["rps"] / s1n["rps"] if s1n["rps"] else 0
add("S1", "queue status poll, WAITING tokens: throughput vs nginx (%d-byte body; %s)" % (
    int(M["s1_bytes"]), pair_note(s1_ratios)),
    round(r1, 3), "x nginx", ">= 0.7", r1 >= 0.7 and all(b["non2xx"] == 0 for b, _ in s1_runs),
    {"boxoffice": s1b, "nginx": s1n, "pairs": [{"boxoffice": b, "nginx": n} for b, n in s1_runs]})
add("S1", "queue status poll: p99 at half of peak (%.0f req/s offered, paced; median of 3 runs: %s ms)" % (
    half["offered_rps"], " / ".join("%.2f" % h["latency"]["p99_ms"] for h in halves)),
    half["latency"]["p99_ms"], "ms", "<= 2 ms", half["latency"]["p99_ms"] <= 2.0 and half["errors"] == 0,
    {"median_run": half, "runs": halves})
half_n = load_json("s1-half-nginx.json") if os.path.exists(raw("s1-half-nginx.json")) else None
if half_n:
    results["s1_half_nginx"] = half_n
log_cost = 1 - s1i["rps"] / s1b["rps"] if s1b["rps"] else 0
results["logging"] = {"warn_rps": s1b["rps"], "info_rps": s1i["rps"], "cost_fraction": round(log_cost, 3)}

# ---------------------------------------------------------------- S2
s2b, s2n, s2_ratios, s2_runs = median_pair("s2")
r2 = s2b["rps"] / s2n["rps"] if s2n["rps"] else 0
add("S2", "seat map, 50 seats, ACTIVE token: throughput vs nginx (%d-byte body; %s)" % (
    int(M["s2_bytes"]), pair_note(s2_ratios)),
    round(r2, 3), "x nginx", ">= 0.5", r2 >= 0.5 and all(b["non2xx"] == 0 for b, _ in s2_runs),
    {"boxoffice": s2b, "nginx": s2n, "pairs": [{"boxoffice": b, "nginx": n} for b, n in s2_runs]})

# ---------------------------------------------------------------- S3
s3b, s3n = wrk("s3-bx"), wrk("s3-nginx")
pool_ok = s3b.get("pool_used", 0) <= s3b.get("pool", 0)
add("S3", "token issuance, distinct users, embedded (%.2fx nginx)" % (s3b["rps"] / s3n["rps"] if s3n["rps"] else 0),
    round(s3b["rps"]), "tokens/s", ">= 30,000/s", s3b["rps"] >= 30000 and s3b["non2xx"] == 0 and pool_ok,
    {"boxoffice": s3b, "nginx": s3n})
so = [wrk("s3-so1"), wrk("s3-so2")]
so_rps = sum(w["rps"] for w in so)
so_ok = all(w["non2xx"] == 0 and w.get("pool_used", 0) <= w.get("pool", 0) for w in so)
add("S3", "token issuance, distinct users, scale-out (2 instances, Redis)", round(so_rps), "tokens/s",
    ">= 15,000/s", so_rps >= 15000 and so_ok, {"instances": so})

# ---------------------------------------------------------------- S4


def s4(name, bar, label):
    d = load_json(name + ".json")
    v = load_json(name + "-verify.json")
    sold_out = d["paid"] >= 20000
    verified = (v["audit_rc"] == 0 and v["sold"] == v["confirmed"] == v["distinct_seats"] == d["paid"]
                and v["sold_not_confirmed"] == 0 and (not sold_out or v["sold"] == 20000))
    fig = d["paid_per_s_sustained"]
    add("S4", "flash crowd %s: paid bookings/s (first to %s paid; sell-out %s)" % (
        label, "20,000th" if sold_out else "last",
        "%.1f s" % d["sellout_s"] if d["sellout_s"] > 0 else "not reached in %.0f s" % d["run_s"]),
        round(fig), "paid/s", ">= %s/s" % "{:,}".format(bar), fig >= bar and verified, {"run": d, "verify": v})
    add("S4", "flash crowd %s: seats sold exactly once, audit clean (%d sold, %d confirmed, %d distinct, audit exit %d)"
        % (label, v["sold"], v["confirmed"], v["distinct_seats"], v["audit_rc"]),
        v["sold"], "seats", "= paid answers%s" % (", 20,000" if sold_out else ""), verified, v)


s4("s4-bx", 10000, "embedded")
s4("s4-so", 3000, "scale-out")
if os.path.exists(raw("pg-alone.json")):  # the scale-out ceiling of this machine's PostgreSQL, no bar
    results["pg_alone"] = load_json("pg-alone.json")
if os.path.exists(raw("s4-core.json")):  # a figure per server core, no bar (machines with 2+ cores)
    results["s4_one_core"] = {"run": load_json("s4-core.json"), "verify": load_json("s4-core-verify.json")}

# ---------------------------------------------------------------- S5
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
    "x (1M / cheapest)", "flat: <= 1.5x", flat <= 1.5, {"curve": [{"waiting": c["issued"], "probe": c["probe"]} for c in cps]})

# ---------------------------------------------------------------- plots
s1sweep = load_jsonl("s1-sweep.jsonl")
with open(raw("s1-sweep.dat"), "w") as f:
    for p in s1sweep:
        f.write("%.0f %.0f %.3f %.3f\n" % (p["offered_rps"], p["achieved_rps"], p["latency"]["p50_ms"],
                                           p["latency"]["p99_ms"]))
s4sweep = load_jsonl("s4-sweep.jsonl")
with open(raw("s4-sweep.dat"), "w") as f:
    for p in s4sweep:
        st = p["steps"]
        f.write("%d %.0f %.3f %.3f %.3f\n" % (p["offered_users_per_s"], p["paid_per_s_sustained"],
                                               st["hold"]["latency"]["p99_ms"], st["pay"]["latency"]["p99_ms"],
                                               st["issue"]["latency"]["p99_ms"]))
results["s1_sweep"] = s1sweep
results["s4_sweep"] = [{k: p[k] for k in ("offered_users_per_s", "paid", "run_s", "paid_per_s_sustained")} |
                       {"p99_ms": {s: p["steps"][s]["latency"]["p99_ms"] for s in p["steps"]}} for p in s4sweep]
plot_ok = True
try:
    subprocess.run(["gnuplot", "-e", "raw='%s'; docs='%s'; nginx=%f" % (RAW, os.path.join(ROOT, "docs"), s1n["rps"]),
                    os.path.join(ROOT, "bench", "plot.gp")], check=True)
except (OSError, subprocess.CalledProcessError) as e:
    plot_ok = False
    print("report: gnuplot failed: %s" % e, file=sys.stderr)

# ---------------------------------------------------------------- outputs
with open(os.path.join(ROOT, "bench", "results.json"), "w") as f:
    json.dump(results, f, indent=1)
    f.write("\n")

s4b = load_json("s4-bx.json")
s4s = load_json("s4-so.json")


def steps_table(d):
    out = ["| step | requests | errors | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    for s, v in d["steps"].items():
        out.append("| %s | %s | %d | %.2f | %.2f |" % (s, fmt(v["count"]), v["errors"], v["latency"]["p50_ms"],
                                                    v["latency"]["p99_ms"]))
    return "\n".join(out)


md = []
md.append("Run of %s on %s: %s cores (%s), %s GiB, kernel %s, %s; nginx %s, wrk %s; "
          "commit %s, boxoffice %s. Disk: fdatasync p50 %.2f ms, p99 %.2f ms. Load average %s at the start, "
          "%s at the end (the machine is shared: expect +-30 %% between runs). Whole run: %s s."
          % (M["date"], M["os"], M["nproc"], M["model"], M["mem_gib"], M["kernel"], "loopback",
             M["nginx"], M["wrk"], M["commit"], M["build"], M["fdatasync_p50_ms"], M["fdatasync_p99_ms"],
             M["loadavg_start"], M.get("loadavg_end", "?"), M.get("total_s", "?")))
md.append("")
md.append("| scenario | what | figure | bar | result |")
md.append("|---|---|---:|---|---|")
for r in rows:
    md.append("| %s | %s | %s | %s | **%s** |" % r)
md.append("")
md.append("Side figures: S1 boxoffice %s req/s vs nginx %s req/s (wrk p99 %s ms vs %s ms); "
          "S2 %s vs %s req/s; S3 nginx %s req/s for a %s-byte body; "
          "`--log-level info` costs %.0f %% of S1 throughput (%s vs %s req/s)."
          % (fmt(s1b["rps"]), fmt(s1n["rps"]), s1b["p99_ms"], s1n["p99_ms"], fmt(s2b["rps"]), fmt(s2n["rps"]),
             fmt(s3n["rps"]), M["s3_bytes"], 100 * log_cost, fmt(s1i["rps"]), fmt(s1b["rps"])))
if half_n:
    md.append("")
    md.append("Control for the S1 latency bar: nginx paced at the same %s req/s by the same load generator: "
              "p50 %.3f ms, p99 %.3f ms (boxoffice: p50 %.3f ms, p99 %.3f ms). When nginx shows the same tail, "
              "the tail comes from the machine (CPU shared with the load generator and other work), not from "
              "boxoffice." % (fmt(half_n["offered_rps"]), half_n["latency"]["p50_ms"], half_n["latency"]["p99_ms"],
                              half["latency"]["p50_ms"], half["latency"]["p99_ms"]))
md.append("")
md.append("S4 embedded (`--active-max %s`, 1,000 connections): %s users arrived, %s admitted, %s paid, "
          "%s holds refused (seat taken), %s still waiting at the end, run %.1f s, peak %s paid/s over 1 s."
          % (M["s4_active_max"], fmt(s4b["arrived"]), fmt(s4b["admitted"]), fmt(s4b["paid"]),
             fmt(s4b["holds_refused"]), fmt(s4b["still_waiting"]), s4b["run_s"], fmt(s4b["paid_per_s_peak_1s"])))
first = s4b["first_paid_s"] if s4b["first_paid_s"] > 0 else 0
nth_arrives = 20000 * s4b["arrival_s"] / s4b["users"]
md.append("")
md.append("The sustained figure cannot exceed the arrival rate: the 20,000th buyer arrives %.1f s into the run, so even "
          "with every arrival buying at once the 20,000th payment comes %.2f s after the first one (%.3f s), a ceiling "
          "of %s paid/s at this arrival rate." % (nth_arrives, nth_arrives - first, first,
                                                   fmt(20000 / max(nth_arrives - first, 1e-9))))
if "s4_one_core" in results:
    c, cv = results["s4_one_core"]["run"], results["s4_one_core"]["verify"]
    md.append("")
    md.append("Per core: the same crowd with the server pinned to one CPU (`--threads 1`) and the load generator to the "
              "other sold %s seats at %s paid/s sustained (sell-out %.1f s, peak %s paid/s over 1 s; %s admitted, "
              "%s holds refused; %d sold, audit exit %d)."
              % (fmt(c["paid"]), fmt(c["paid_per_s_sustained"]), c["sellout_s"], fmt(c["paid_per_s_peak_1s"]),
                 fmt(c["admitted"]), fmt(c["holds_refused"]), cv["sold"], cv["audit_rc"]))
md.append("")
md.append(steps_table(s4b))
md.append("")
md.append("S4 scale-out (2 instances x `--threads %s`, `--active-max %s`, 2 x 500 connections): %s arrived, "
          "%s admitted, %s paid, %s holds refused, %s still waiting, run %.1f s, peak %s paid/s over 1 s."
          % (M["so_threads"], M["s4_active_max"], fmt(s4s["arrived"]), fmt(s4s["admitted"]), fmt(s4s["paid"]),
             fmt(s4s["holds_refused"]), fmt(s4s["still_waiting"]), s4s["run_s"], fmt(s4s["paid_per_s_peak_1s"])))
if "pg_alone" in results:
    p = results["pg_alone"]
    md.append("")
    md.append("For scale: PostgreSQL alone on this machine (pgbench calling the same hold and pay functions, one commit "
              "each, %d clients, nothing else running: no HTTP, no queue, no seat maps, no date lists) sold %s seats "
              "in %.1f s, %s paid/s (%s attempts, the rest on seats already taken)."
              % (p["clients"], fmt(p["paid"]), p["seconds"], fmt(p["paid_per_s"]), fmt(p["attempts"])))
md.append("")
md.append(steps_table(s4s))
md.append("")
md.append("S1 offered load (paced, 64 connections, latency from the moment each request was due):")
md.append("")
md.append("| offered req/s | achieved req/s | p50 ms | p99 ms |")
md.append("|---:|---:|---:|---:|")
for p in s1sweep:
    md.append("| %s | %s | %.3f | %.3f |" % (fmt(p["offered_rps"]), fmt(p["achieved_rps"]), p["latency"]["p50_ms"],
                                           p["latency"]["p99_ms"]))
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
print("%-4s %-12s %-16s %-5s  %s" % ("", "figure", "bar", "", "what"))
for sid, what, figure, bar, res in rows:
    print("%-4s %-22s %-16s %-5s %s" % (sid, figure, bar, res, what))
npass = sum(1 for r in rows if r[4] == "PASS")
print("bench: %d of %d bars pass; bench/results.json and docs/BENCHMARKS.md written" % (npass, len(rows)))
