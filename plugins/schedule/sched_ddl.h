/* sched_ddl.h: the email_schedules table (RULES.md), shared by the schedule stage and
 * the benchmark's calibration floor (tests/tools/sched_floor.c), which must use the same schema. */
#ifndef FERRY_SCHED_DDL_H
#define FERRY_SCHED_DDL_H

#define SCHED_CREATE_TABLE \
	"CREATE TABLE email_schedules (\n" \
	"  id                   INTEGER PRIMARY KEY AUTOINCREMENT,\n" \
	"  contact_id           INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,\n" \
	"  email_type           TEXT NOT NULL,\n" \
	"  scheduled_send_date  TEXT NOT NULL,\n" \
	"  scheduled_send_time  TEXT NOT NULL DEFAULT '08:30:00',\n" \
	"  status               TEXT NOT NULL DEFAULT 'pre-scheduled',\n" \
	"  skip_reason          TEXT,\n" \
	"  priority             INTEGER DEFAULT 10,\n" \
	"  event_year           INTEGER,\n" \
	"  event_month          INTEGER,\n" \
	"  event_day            INTEGER,\n" \
	"  campaign_instance_id INTEGER,\n" \
	"  email_template       TEXT,\n" \
	"  sms_template         TEXT,\n" \
	"  batch_id             TEXT,\n" \
	"  scheduler_run_id     TEXT,\n" \
	"  catchup_note         TEXT,\n" \
	"  actual_send_datetime TEXT,\n" \
	"  metadata             TEXT,\n" \
	"  created_at           TEXT NOT NULL DEFAULT (datetime('now')),\n" \
	"  updated_at           TEXT NOT NULL DEFAULT (datetime('now'))\n" \
	")"

#endif
