#!/usr/bin/env python3
"""lint-tx.py — no `return` between a transaction's begin and its end.

In src/store/store_sqlite.c every write runs between tx_begin() and tx_end() /
tx_commit() / tx_rollback() (reads of the audit between BEGIN and ROLLBACK). A
`return` in between leaves the transaction open: on its own connection the next
BEGIN fails, and inside a group commit (store/group_commit.c) the half-done op
stays in the batch and is committed with it. Every exit must go through the
function's end label instead (`goto out`).

Rules, per function (comments and strings are blanked first):
  - a begin is `tx_begin(` or `run_plain(s, ST_BEGIN_READ|ST_BEGIN_WRITE)`; the
    statement right after it that handles the begin's own failure
    (`if (e) return e;`, or the body of `if ((e = tx_begin(s)))`) is allowed;
  - an end is a whole statement calling tx_end / tx_commit / tx_rollback (or
    run_plain with ST_COMMIT / ST_ROLLBACK), e.g. `return tx_end(s, e);`. An end
    inside a condition (`if (... || (e = tx_commit(s)))`) ends nothing: the
    branch taken when it is not reached still has the transaction open;
  - an end in a nested block ends the transaction for the rest of that block only;
  - any other `return` while a transaction is open is a finding.
The functions that implement the primitives (tx_*, sqlite_batch_*) are skipped.

  scripts/lint-tx.py [file ...]     (default: src/store/store_sqlite.c)
Prints one line per finding ("file:line: return inside the transaction begun at
line N in fn()"); exit 1 when there is any.
"""
import re
import sys

BEGIN = re.compile(r"\btx_begin\s*\(|\brun_plain\s*\(\s*\w+\s*,\s*ST_BEGIN_(?:READ|WRITE)\s*\)")
END_STMT = re.compile(
    r"^\s*(?:\w+:\s*)?(?:return\s+|[A-Za-z_]\w*\s*=\s*)?"
    r"(?:tx_(?:end|commit|rollback)\s*\(|run_plain\s*\(\s*\w+\s*,\s*ST_(?:COMMIT|ROLLBACK)\s*\))"
    r"[^;]*;\s*$"
)
RETURN = re.compile(r"\breturn\b")
FUNC = re.compile(r"^(?:static\s+)?[A-Za-z_][\w\s\*]*?\b([A-Za-z_]\w*)\s*\(")
SKIP_FUNCS = {"tx_begin", "tx_end", "tx_commit", "tx_rollback", "sqlite_batch_begin", "sqlite_batch_commit"}


def blank(src):
    """Comments and string/char literals replaced by spaces (newlines kept)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", src[i + 1 : j - 1]) + c)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def check(path):
    lines = blank(open(path, encoding="utf-8").read()).split("\n")
    findings = []
    depth = 0
    fn = None
    tx = None  # (begin line, depth of the begin) while a transaction is open
    closed_at = None  # depth of the block where an end was seen (None: open)
    skip_failure = 0  # lines of the begin's own failure branch still to skip
    for no, line in enumerate(lines, 1):
        if depth == 0:
            m = FUNC.match(line)
            if m:
                fn = m.group(1)
                tx, closed_at = None, None
        if tx is not None and fn not in SKIP_FUNCS:
            if closed_at is not None and depth < closed_at:
                closed_at = None  # left the block that had ended it
            if skip_failure:
                skip_failure -= 1
            elif END_STMT.match(line):
                if depth <= tx[1]:
                    tx, closed_at = None, None
                elif closed_at is None:
                    closed_at = depth
            elif RETURN.search(line) and closed_at is None:
                findings.append(
                    f"{path}:{no}: return inside the transaction begun at line {tx[0]} in {fn}(): "
                    "leave through the end label (goto out) so that it is committed or rolled back"
                )
        if fn not in SKIP_FUNCS and tx is None and BEGIN.search(line):
            tx, closed_at = (no, depth), None
            stripped = line.strip()
            nxt = lines[no].strip() if no < len(lines) else ""
            nxt2 = lines[no + 1].strip() if no + 1 < len(lines) else ""
            if stripped.startswith("if") and not stripped.endswith(";"):
                skip_failure = 1  # `if ((e = tx_begin(s)))` + its one-statement body
            elif re.fullmatch(r"if\s*\(\s*e\s*\)", nxt) and RETURN.match(nxt2):
                skip_failure = 2  # `if (e)` / `return e;`
            elif re.fullmatch(r"if\s*\(\s*e\s*\)\s*return\s+e\s*;", nxt):
                skip_failure = 1
        depth += line.count("{") - line.count("}")
        if depth == 0 and "}" in line:
            fn, tx = None, None
    return findings


def main(argv):
    files = argv[1:] or ["src/store/store_sqlite.c"]
    findings = [f for p in files for f in check(p)]
    for f in findings:
        print(f)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
