#!/usr/bin/env python3
"""check_props.py: property checks of a scheduled org DB, independent of the C code (RULES.md).

  check_props.py props DB TODAY [MAX PERIOD]   no pre-scheduled row before today or inside the
                                               contact's exclusion window; frequency limit holds
                                               counting counted rows; owned rows only for valid
                                               contacts
  check_props.py foreign DB                    print every row not owned by the stage (all columns)
  check_props.py owned DB                      print owned rows with ids (rerun comparisons)
Exit 1 with one line per violation.
"""
import datetime
import os
import sqlite3
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = os.path.join(HERE, "..", "..", "conf")
KNOWN = set("AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV "
            "NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR VI GU AS MP "
            "AA AE AP".split())
OWNED = "status IN ('pre-scheduled','skipped') AND email_type IN " \
        "('birthday','effective_date','aep','post_window')"


def data_lines(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n").rstrip("\r").strip(" \t")
            if line and not line.startswith("#"):
                out.append([x.strip(" \t") for x in line.split(",")])
    return out[1:]


def load_rules():
    rules = {}
    for st, rule, b, a, p, ms in data_lines(os.path.join(CONF, "state_rules.csv")):
        rules.setdefault(st, {})[rule] = (int(b), int(a), int(p), ms == "1")
    zips = {}
    for lo, hi, st in data_lines(os.path.join(CONF, "zip3_states.csv")):
        for z in range(int(lo), int(hi) + 1):
            zips[z] = st
    return rules, zips


def parse_date(v):
    if v is None:
        return None
    v = str(v).strip(" \t")
    if not v:
        return None
    if len(v) < 10 or (len(v) > 10 and v[10] not in "T "):
        return "bad"
    s = v[:10]
    if not (s[:4].isdigit() and s[4] == "-" and s[5:7].isdigit() and s[7] == "-" and s[8:].isdigit()):
        return "bad"
    try:
        d = datetime.date(int(s[:4]), int(s[5:7]), int(s[8:]))
    except ValueError:
        return "bad"
    return d if 1800 <= d.year <= 2200 else "bad"


def anniv(y, e):
    if e.month == 2 and e.day == 29:
        try:
            return datetime.date(y, 2, 29)
        except ValueError:
            return datetime.date(y, 2, 28)
    return datetime.date(y, e.month, e.day)


def state_of(row, zips):
    st = (row["state"] or "").strip(" \t").upper()
    if st in KNOWN:
        return st
    z = row["zip_code"]
    z = "" if z is None else str(z).strip(" \t")
    if z.isdigit() and len(z) in (3, 4):
        z = z.rjust(5, "0")
    if len(z) >= 5 and z[:5].isdigit() and (len(z) == 5 or z[5] in "- "):
        return zips.get(int(z[:3]))
    return None


def excluded(rules, st, birth, ed, d):
    r = rules.get(st, {})
    if "year_round" in r:
        return True
    for rule, anchor in (("birthday", birth), ("effective_date", ed)):
        if rule not in r or not isinstance(anchor, datetime.date):
            continue
        b, a, p, ms = r[rule]
        for y in (d.year - 1, d.year, d.year + 1):
            B = datetime.date(y, anchor.month, 1) if ms else anniv(y, anchor)
            if B - datetime.timedelta(days=b + p) <= d <= B + datetime.timedelta(days=a):
                return True
    return False


def props(db, today, mx, period):
    rules, zips = load_rules()
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    con.row_factory = sqlite3.Row
    contacts = {r["id"]: r for r in con.execute("SELECT * FROM contacts")}
    errors = []
    counted = {}
    for r in con.execute("SELECT contact_id, CAST(scheduled_send_date AS TEXT) AS d FROM email_schedules "
                         "WHERE status IS NULL OR status NOT IN ('pre-scheduled','skipped')"):
        d = parse_date((r["d"] or "")[:10])
        if isinstance(d, datetime.date):
            counted.setdefault(r["contact_id"], []).append(d)
    pre = {}
    n = 0
    for r in con.execute("SELECT * FROM email_schedules WHERE " + OWNED):
        n += 1
        c = contacts.get(r["contact_id"])
        if c is None:
            errors.append("row %d: contact %s does not exist" % (r["id"], r["contact_id"]))
            continue
        em = (c["email"] or "").strip(" \t")
        birth, ed = parse_date(c["birth_date"]), parse_date(c["effective_date"])
        if not em or "@" not in em or birth == "bad" or ed == "bad":
            errors.append("row %d: contact %s is not valid" % (r["id"], r["contact_id"]))
        if r["status"] != "pre-scheduled":
            continue
        d = datetime.date.fromisoformat(r["scheduled_send_date"])
        if d < today:
            errors.append("row %d: pre-scheduled %s before today" % (r["id"], d))
        if excluded(rules, state_of(c, zips), birth, ed, d):
            errors.append("row %d: pre-scheduled %s %s inside an exclusion window of contact %d"
                          % (r["id"], r["email_type"], d, r["contact_id"]))
        pre.setdefault(r["contact_id"], []).append(d)
    for cid, ds in pre.items():
        alld = sorted(ds + counted.get(cid, []))
        for d in ds:
            for s in range(period):
                lo = d - datetime.timedelta(days=period - 1 - s)
                hi = lo + datetime.timedelta(days=period - 1)
                k = sum(1 for x in alld if lo <= x <= hi)
                if k > mx:
                    errors.append("contact %d: %d emails in %s..%s" % (cid, k, lo, hi))
                    break
    for e in errors[:50]:
        print(e)
    print("# checked %d owned rows, %d contacts with pre-scheduled rows, %d violations"
          % (n, len(pre), len(errors)), file=sys.stderr)
    return 1 if errors or n == 0 else 0


def dump(db, where, order):
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    for r in con.execute("SELECT * FROM email_schedules WHERE %s ORDER BY %s" % (where, order)):
        print("|".join("" if v is None else repr(v) for v in r))
    return 0


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "props":
        mx = int(sys.argv[4]) if len(sys.argv) > 4 else 3
        period = int(sys.argv[5]) if len(sys.argv) > 5 else 30
        return props(sys.argv[2], datetime.date.fromisoformat(sys.argv[3]), mx, period)
    if len(sys.argv) == 3 and sys.argv[1] == "foreign":
        return dump(sys.argv[2], "NOT (%s)" % OWNED, "id")
    if len(sys.argv) == 3 and sys.argv[1] == "owned":
        return dump(sys.argv[2], OWNED, "id")
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
