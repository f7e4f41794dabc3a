#!/usr/bin/env python3
"""pagediff.py OLD.db NEW.db [PART_MIB]: which pages of a SQLite database changed between two
copies of it, named by the b-tree (table or index) each belongs to in NEW (SQLite's dbstat),
and how many upload parts of PART_MIB (default 8) hold a changed byte. Used for the figures
of tests/bench/RESULTS.md (the daily case). Reads both files whole; not a test."""
import sqlite3
import sys
from collections import Counter


def main():
    old, new = sys.argv[1], sys.argv[2]
    part = int(sys.argv[3] if len(sys.argv) > 3 else 8) << 20
    ps = sqlite3.connect(new).execute("PRAGMA page_size").fetchone()[0]
    changed, parts, nparts = set(), 0, 0
    with open(old, "rb") as a, open(new, "rb") as b:
        base = 0
        while True:
            x, y = a.read(part), b.read(part)
            if not x and not y:
                break
            nparts += 1
            if x != y:
                parts += 1
                for k in range(0, max(len(x), len(y)), ps):
                    if x[k:k + ps] != y[k:k + ps]:
                        changed.add(base + k // ps + 1)
            base += part // ps
    owner = dict((p, n) for n, p in sqlite3.connect(new).execute("SELECT name, pageno FROM dbstat"))
    total = Counter(owner.values())
    print("pages changed %d of %d; %d MiB parts with a change: %d of %d"
          % (len(changed), sum(total.values()), part >> 20, parts, nparts))
    for name, n in Counter(owner.get(p, "(free or past the end)") for p in changed).most_common():
        print("  %-40s %8d of %d" % (name, n, total.get(name, 0)))


if __name__ == "__main__":
    main()
