#!/usr/bin/env python3
"""gen_orgdb.py: generate a realistic org SQLite database for the schedule stage's tests and benchmarks.

Deterministic from --seed. Contacts cover every state with special rules, Feb 29 births,
absent and malformed dates, ZIP-only and unknown states, bad emails; email_schedules holds
sent/scheduled rows (counted), foreign pre-scheduled rows (not owned) and stale owned rows.

  gen_orgdb.py OUT.db [--contacts N] [--seed S] [--today YYYY-MM-DD]
               [--no-schedules] [--events]
"""
import argparse
import datetime
import json
import os
import random
import sqlite3
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ZIP_FILE = os.path.join(HERE, "..", "conf", "zip3_states.csv")

# Weighted state mix: every state with a rule is common enough to matter.
SPECIAL = ["CA", "ID", "KY", "MD", "NV", "OK", "OR", "VA", "MO", "CT", "MA", "NY", "WA"]
OTHER = ["AL", "AK", "AZ", "AR", "CO", "DE", "FL", "GA", "HI", "IL", "IN", "IA", "KS", "LA",
         "ME", "MI", "MN", "MS", "MT", "NE", "NH", "NJ", "NM", "NC", "ND", "OH", "PA", "RI",
         "SC", "SD", "TN", "TX", "UT", "VT", "WV", "WI", "WY", "DC", "PR", "VI", "GU", "AS",
         "MP", "AA", "AE", "AP"]
FIRST = ["james", "mary", "robert", "patricia", "john", "jennifer", "michael", "linda", "david",
         "elizabeth", "william", "barbara", "richard", "susan", "joseph", "jessica", "thomas",
         "sarah", "charles", "karen", "maria", "jose", "wei", "olga", "ahmed", "fatima"]
LAST = ["smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis",
        "rodriguez", "martinez", "hernandez", "lopez", "gonzalez", "wilson", "anderson", "lee",
        "nguyen", "kim", "patel", "cohen", "obrien", "schmidt"]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "aol.com", "icloud.com", "comcast.net",
           "example.org", "mail.example.co.uk"]
BAD_EMAILS = ["no-at-sign.example.com", "two@@example.com", "a@b", "x@y.c", "spaces in@example.com",
              "@example.com", "tld@example.c0m", "trailing@example.com.", "semi;colon@example.com"]
BAD_DATES = ["1961-02-30", "02/03/1961", "1961-2-3", "19610203", "1961-13-01", "1799-05-05",
             "not a date", "1961-04-31", "1900-02-29", "1961-06-15x"]
UNKNOWN_STATES = ["XX", "ZZ", "Calif", "N/A", "Texas", "??"]
TYPES = ["birthday", "effective_date", "aep", "post_window"]

SCHEDULES_DDL = """CREATE TABLE email_schedules (
  id                   INTEGER PRIMARY KEY AUTOINCREMENT,
  contact_id           INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  email_type           TEXT NOT NULL,
  scheduled_send_date  TEXT NOT NULL,
  scheduled_send_time  TEXT NOT NULL DEFAULT '08:30:00',
  status               TEXT NOT NULL DEFAULT 'pre-scheduled',
  skip_reason          TEXT,
  priority             INTEGER DEFAULT 10,
  event_year           INTEGER,
  event_month          INTEGER,
  event_day            INTEGER,
  campaign_instance_id INTEGER,
  email_template       TEXT,
  sms_template         TEXT,
  batch_id             TEXT,
  scheduler_run_id     TEXT,
  catchup_note         TEXT,
  actual_send_datetime TEXT,
  metadata             TEXT,
  created_at           TEXT NOT NULL DEFAULT (datetime('now')),
  updated_at           TEXT NOT NULL DEFAULT (datetime('now'))
)"""


def zip_ranges():
    by_state = {}
    with open(ZIP_FILE) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or line.startswith("zip3_lo"):
                continue
            lo, hi, st = [x.strip() for x in line.split(",")]
            by_state.setdefault(st, []).append((int(lo), int(hi)))
    return by_state


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--contacts", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--today", default="2024-10-01",
                    help="dates of existing sent rows are spread around this day")
    ap.add_argument("--no-schedules", action="store_true", help="no email_schedules table (cold)")
    ap.add_argument("--events", action="store_true", help="add contact_events (underwriting)")
    a = ap.parse_args()
    if a.contacts < 1:
        sys.exit("gen_orgdb: --contacts must be >= 1")
    if os.path.exists(a.out):
        os.unlink(a.out)
    rnd = random.Random(a.seed)
    today = datetime.date.fromisoformat(a.today)
    zips = zip_ranges()
    states = SPECIAL * 3 + OTHER  # special states are over-represented
    base_day = datetime.date(1930, 1, 1).toordinal()
    birth_span = datetime.date(1965, 12, 31).toordinal() - base_day
    ed_base = datetime.date(2010, 1, 1).toordinal()
    ed_span = (today + datetime.timedelta(days=120)).toordinal() - ed_base
    leap_years = [y for y in range(1932, 1966, 4)]

    # Lookup tables keep the per-contact loop to a few random() calls (1M contacts < 20 s).
    birth_dates = [datetime.date.fromordinal(base_day + i).isoformat() for i in range(birth_span)]
    ed_dates = [datetime.date.fromordinal(ed_base + i).isoformat() for i in range(ed_span)]
    zip_pool = {}
    for st in set(states):
        pool = []
        for lo, hi in zips.get(st, []):
            pool.extend(range(lo, hi + 1))
        zip_pool[st] = ["%03d" % z for z in pool]
    n_states, n_birth, n_ed = len(states), len(birth_dates), len(ed_dates)
    n_first, n_last, n_dom = len(FIRST), len(LAST), len(DOMAINS)

    rows = []
    r = rnd.random
    for cid in range(1, a.contacts + 1):
        fn, ln = FIRST[int(r() * n_first)], LAST[int(r() * n_last)]
        x = r()
        if x < 0.01:
            email = rnd.choice([None, "", "   "])
        elif x < 0.02:
            email = rnd.choice(BAD_EMAILS)
        else:
            email = "%s.%s%d@%s" % (fn, ln, cid, DOMAINS[int(r() * n_dom)])
            if x > 0.995:
                email = "  " + email.upper() + "\t"
        st = states[int(r() * n_states)]
        pool = zip_pool[st]
        zc = "%s%02d" % (pool[int(r() * len(pool))], cid % 100) if pool else None
        x = r()
        if x < 0.03:
            state = None                       # ZIP-only
        elif x < 0.04:
            state, zc = rnd.choice(UNKNOWN_STATES), (zc if r() < 0.5 else None)
        elif x < 0.045:
            state, zc = None, None             # nothing at all
        elif x < 0.07:
            state = " %s " % st.lower()
        else:
            state = st
        if zc is not None:
            y = r()
            if y < 0.05 and zc[0] == "0":
                zc = int(zc)                   # stored as an integer: leading zero lost
            elif y < 0.10:
                zc = "%s-%04d" % (zc, cid % 10000)
        x = r()
        if x < 0.03:
            birth = None
        elif x < 0.035:
            birth = rnd.choice(BAD_DATES)
        elif x < 0.04:
            birth = "%d-02-29" % rnd.choice(leap_years)
        else:
            birth = birth_dates[int(r() * n_birth)]
            if x > 0.99:
                birth += rnd.choice(["T00:00:00", " 00:00:00", "  "])
        x = r()
        if x < 0.12:
            ed = None
        elif x < 0.123:
            ed = rnd.choice(BAD_DATES)
        elif x < 0.125:
            ed = "2016-02-29"
        else:
            ed = ed_dates[int(r() * n_ed)]
        rows.append((cid, fn, ln, email, state, zc, birth, ed, cid % 10000))

    db = sqlite3.connect(a.out, isolation_level=None)
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    db.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, "
               "email TEXT, state TEXT, zip_code TEXT, birth_date TEXT, effective_date TEXT, "
               "phone_number TEXT, created_at TEXT)")
    db.executemany("INSERT INTO contacts VALUES (?,?,?,?,?,?,?,?,'555-' || substr('000' || ?, -4),"
                   "'2023-01-01 00:00:00')", rows)
    rows = None
    if a.events:
        db.execute("CREATE TABLE contact_events (id INTEGER PRIMARY KEY, contact_id INTEGER, "
                   "event_type TEXT, metadata TEXT, created_at TEXT)")
        ev = []
        for cid in range(1, a.contacts + 1):
            if r() >= 0.05:
                continue
            for k in range(rnd.randint(1, 3)):
                md = rnd.choice([json.dumps({"has_medical_conditions": True}),
                                 json.dumps({"has_medical_conditions": False}),
                                 json.dumps({"has_medical_conditions": "true"}),
                                 json.dumps({"other": 1}), "not json", None])
                when = rnd.choice([None, "2024-01-0%d" % rnd.randint(1, 3)])
                ev.append((cid, rnd.choice(["eligibility_answered"] * 4 + ["page_view"]), md, when))
        db.executemany("INSERT INTO contact_events (contact_id, event_type, metadata, created_at) "
                       "VALUES (?,?,?,?)", ev)
    if not a.no_schedules:
        db.execute(SCHEDULES_DDL)
        sc = []
        t0 = today.toordinal()
        day = {o: datetime.date.fromordinal(o).isoformat() for o in range(t0 - 60, t0 + 301)}
        hist_types = TYPES + ["BIRTHDAY", "newsletter"]
        hist_status = ["sent", "delivered", "scheduled", "processing"]
        for cid in range(1, a.contacts + 1):
            x = r()
            if x < 0.10:                       # history: sent / scheduled rows
                for k in range(1 + int(r() * 3)):
                    sc.append((cid, hist_types[int(r() * 6)], day[t0 - 60 + int(r() * 81)],
                               hist_status[int(r() * 4)], "old"))
            elif x < 0.13:                     # someone else's plan: never touched
                sc.append((cid, "campaign_%d" % (1 + int(r() * 3)), day[t0 + int(r() * 201)],
                           "pre-scheduled", "camp"))
            elif x < 0.18:                     # a stale plan of an older run: replaced
                sc.append((cid, TYPES[int(r() * 4)], day[t0 - 30 + int(r() * 331)],
                           "pre-scheduled" if r() < 0.5 else "skipped", "stale"))
        # unique keys only (the schedule's index)
        seen = set()
        uniq = []
        for row in sc:
            key = row[:3]
            if key not in seen:
                seen.add(key)
                uniq.append(row)
        db.executemany("INSERT INTO email_schedules (contact_id, email_type, scheduled_send_date, "
                       "status, batch_id) VALUES (?,?,?,?,?)", uniq)
        db.execute("CREATE UNIQUE INDEX idx_email_schedules_unique "
                   "ON email_schedules(contact_id, email_type, scheduled_send_date)")
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode = DELETE")
    db.close()


if __name__ == "__main__":
    main()
