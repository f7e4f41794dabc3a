/* test_schedule.c: unit and golden tests of the schedule stage's core (RULES.md). */
#include "unit.h"

#include <openssl/evp.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sched_core.h"
#include "sched_db.h"

static char tmpdir[] = "/tmp/test_schedule.XXXXXX";

static int32_t D(const char *s)
{
	int32_t n = 0;

	if (!sched_parse_ymd(s, strlen(s), &n))
		UNIT_FAIL("bad test date '%s'", s);
	return n;
}

static const char *fmt(int32_t n)
{
	static char buf[8][11];
	static int k;

	k = (k + 1) % 8;
	sched_fmt_date(n, buf[k]);
	return buf[k];
}

/* ---- dates ---- */

static void test_dates(void)
{
	int y, m, d;

	ASSERT_TRUE(sched_leap(2024));
	ASSERT_TRUE(sched_leap(2000));
	ASSERT_TRUE(!sched_leap(1900));
	ASSERT_TRUE(!sched_leap(2100));
	ASSERT_TRUE(!sched_leap(2025));
	ASSERT_EQ(sched_days(1970, 1, 1), 0);
	ASSERT_EQ(sched_days(2000, 3, 1), 11017);
	ASSERT_EQ(sched_days(1969, 12, 31), -1);
	/* round trip over the whole accepted range */
	for (int32_t n = sched_days(1799, 1, 1); n <= sched_days(2201, 12, 31); n++) {
		sched_civil(n, &y, &m, &d);
		if (sched_days(y, m, d) != n || d > sched_mdays(y, m) || sched_year(n) != y) {
			UNIT_FAIL("round trip of day %d", n);
			break;
		}
	}
	/* month and year ends */
	ASSERT_STREQ(fmt(D("2024-12-31") + 1), "2025-01-01");
	ASSERT_STREQ(fmt(D("2024-02-28") + 1), "2024-02-29");
	ASSERT_STREQ(fmt(D("2025-02-28") + 1), "2025-03-01");
	ASSERT_STREQ(fmt(D("2024-03-01") - 1), "2024-02-29");
	ASSERT_STREQ(fmt(D("2100-02-28") + 1), "2100-03-01");
	ASSERT_STREQ(fmt(D("2000-02-28") + 1), "2000-02-29");
	/* Feb 29 anchors: clamp to Feb 28 in common years */
	ASSERT_STREQ(fmt(sched_anniv(2025, 2, 29)), "2025-02-28");
	ASSERT_STREQ(fmt(sched_anniv(2028, 2, 29)), "2028-02-29");
	ASSERT_STREQ(fmt(sched_anniv(2100, 2, 29)), "2100-02-28");
	ASSERT_STREQ(fmt(sched_next_anniv(D("2024-10-01"), 2, 29)), "2025-02-28");
	ASSERT_STREQ(fmt(sched_next_anniv(D("2027-03-01"), 2, 29)), "2028-02-29");
	ASSERT_STREQ(fmt(sched_next_anniv(D("2028-02-29"), 2, 29)), "2028-02-29");
	ASSERT_STREQ(fmt(sched_next_anniv(D("2025-02-28"), 2, 29)), "2025-02-28");
	ASSERT_STREQ(fmt(sched_next_anniv(D("2025-03-01"), 2, 29)), "2026-02-28");
	ASSERT_STREQ(fmt(sched_next_anniv(D("2024-10-01"), 10, 1)), "2024-10-01");
	ASSERT_STREQ(fmt(sched_next_anniv(D("2024-10-02"), 10, 1)), "2025-10-01");
	ASSERT_STREQ(fmt(sched_next_anniv(D("2024-12-31"), 1, 1)), "2025-01-01");
	/* strict parsing (RULES.md, contacts that get nothing) */
	int32_t v;
	ASSERT_EQ(sched_parse_value_date("1961-02-30", 10, &v), -1);
	ASSERT_EQ(sched_parse_value_date("1960-02-29", 10, &v), 1);
	ASSERT_EQ(sched_parse_value_date("1961-02-29", 10, &v), -1);
	ASSERT_EQ(sched_parse_value_date("1900-02-29", 10, &v), -1);
	ASSERT_EQ(sched_parse_value_date("2000-02-29", 10, &v), 1);
	ASSERT_EQ(sched_parse_value_date("1799-12-31", 10, &v), -1);
	ASSERT_EQ(sched_parse_value_date("1800-01-01", 10, &v), 1);
	ASSERT_EQ(sched_parse_value_date("2200-12-31", 10, &v), 1);
	ASSERT_EQ(sched_parse_value_date("2201-01-01", 10, &v), -1);
	ASSERT_EQ(sched_parse_value_date(" 1961-02-03\t", 12, &v), 1);
	ASSERT_STREQ(fmt(v), "1961-02-03");
	ASSERT_EQ(sched_parse_value_date("1961-02-03T10:00:00Z", 20, &v), 1);
	ASSERT_EQ(sched_parse_value_date("1961-02-03 10:00", 16, &v), 1);
	ASSERT_EQ(sched_parse_value_date("1961-02-03x", 11, &v), -1);
	ASSERT_EQ(sched_parse_value_date("1961-2-03", 9, &v), -1);
	ASSERT_EQ(sched_parse_value_date("1961/02/03", 10, &v), -1);
	ASSERT_EQ(sched_parse_value_date("02/03/1961", 10, &v), -1);
	ASSERT_EQ(sched_parse_value_date("1961-13-01", 10, &v), -1);
	ASSERT_EQ(sched_parse_value_date("1961-00-10", 10, &v), -1);
	ASSERT_EQ(sched_parse_value_date("-961-01-10", 10, &v), -1);
	ASSERT_EQ(sched_parse_value_date("   ", 3, &v), 0);
	ASSERT_EQ(sched_parse_value_date("", 0, &v), 0);
}

static void test_fnv(void)
{
	ASSERT_EQ(sched_fnv1a32("", 0), 2166136261u);
	ASSERT_EQ(sched_fnv1a32("a", 1), 3826002220u);
	ASSERT_EQ(sched_fnv1a32("1-effective_date-2025", 21), 1728111575u);
	ASSERT_EQ(sched_fnv1a32("42-effective_date-2025", 22), 1501282104u);
	ASSERT_EQ(sched_fnv1a32("12345-effective_date-2024", 25), 3938396592u);
}

/* ---- data files ---- */

static int rules_err(const char *text, char *err, size_t len)
{
	struct sched_rules r;

	return sched_rules_parse("r.csv", text, strlen(text), &r, err, len);
}

static int zips_err(const char *text, char *err, size_t len)
{
	struct sched_zips z;

	return sched_zips_parse("z.csv", text, strlen(text), &z, err, len);
}

#define RH "state,rule,before_days,after_days,pre_buffer_days,month_start\n"
#define ZH "zip3_lo,zip3_hi,state\n"

static void test_data_files(void)
{
	struct sched_rules r;
	struct sched_zips z;
	char err[512];

	ASSERT_EQ(sched_rules_load("conf/state_rules.csv", &r, err, sizeof(err)), 0);
	int ca = sched_state_index("CA", 2), nv = sched_state_index("NV", 2);
	int mo = sched_state_index("MO", 2), ny = sched_state_index("NY", 2);
	int tx = sched_state_index("TX", 2);
	ASSERT_TRUE(r.st[ca].bday.on && r.st[ca].bday.before == 30 && r.st[ca].bday.after == 60 &&
		    r.st[ca].bday.pre == 60 && !r.st[ca].bday.month_start);
	ASSERT_TRUE(r.st[nv].bday.on && r.st[nv].bday.month_start);
	ASSERT_TRUE(r.st[mo].ed.on && !r.st[mo].bday.on && r.st[mo].ed.after == 33);
	ASSERT_TRUE(r.st[ny].year_round);
	ASSERT_TRUE(!r.st[tx].year_round && !r.st[tx].bday.on && !r.st[tx].ed.on);
	ASSERT_EQ(sched_zips_load("conf/zip3_states.csv", &z, err, sizeof(err)), 0);
	ASSERT_EQ(z.state[5], sched_state_index("NY", 2));
	ASSERT_EQ(z.state[21], sched_state_index("MA", 2));
	ASSERT_EQ(z.state[902], ca);
	ASSERT_EQ(z.state[999], sched_state_index("AK", 2));
	ASSERT_EQ(z.state[0], -1);
	ASSERT_EQ(z.state[568], -1);
	ASSERT_EQ(z.state[733], tx);

	/* comments, blank lines, CRLF, spaces around fields */
	ASSERT_EQ(rules_err("# c\r\n\r\n  " RH "CA , birthday,30,60,60,0\r\n\t# x\nNY,year_round,9,9,9,1\n",
			    err, sizeof(err)), 0);
	/* every error names file and line */
	ASSERT_EQ(rules_err("", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:0: missing header");
	ASSERT_EQ(rules_err("# only\nstate,rule\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:2: header must be");
	ASSERT_EQ(rules_err(RH "CA,birthday,30,60,60\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:2: expected 6 comma-separated fields, got 5");
	ASSERT_EQ(rules_err(RH "\nCA,birthday,30,60,60,0,1\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:3: expected 6");
	ASSERT_EQ(rules_err(RH "ca,birthday,30,60,60,0\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:2: state 'ca' is not two upper-case letters");
	ASSERT_EQ(rules_err(RH "CAL,birthday,30,60,60,0\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:2: state 'CAL'");
	ASSERT_EQ(rules_err(RH "CA,bday,30,60,60,0\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:2: rule 'bday'");
	ASSERT_EQ(rules_err(RH "CA,birthday,-1,60,60,0\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:2: before_days '-1'");
	ASSERT_EQ(rules_err(RH "CA,birthday,1,6x,60,0\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:2: after_days '6x'");
	ASSERT_EQ(rules_err(RH "CA,birthday,1,6,,0\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:2: pre_buffer_days ''");
	ASSERT_EQ(rules_err(RH "CA,birthday,1,6,6,2\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:2: month_start '2'");
	ASSERT_EQ(rules_err(RH "CA,birthday,1,6,6,0\nCA,birthday,1,6,6,0\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:3: second 'birthday' rule for state 'CA'");
	ASSERT_EQ(rules_err(RH "CA,birthday,1,6,6,0\nCA,effective_date,1,6,6,0\nCA,year_round,0,0,0,0\n",
			    err, sizeof(err)), 0);
	ASSERT_EQ(rules_err(RH "CA,birthday,300,6,66,0\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:2: before_days + pre_buffer_days is 366");
	ASSERT_EQ(rules_err(RH "CA,birthday,300,6,65,0\n", err, sizeof(err)), 0);
	ASSERT_EQ(rules_err(RH "CA,effective_date,0,366,0,0\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "r.csv:2: after_days is 366");
	ASSERT_EQ(rules_err(RH "CA,year_round,999,999,999,0\n", err, sizeof(err)), 0);
	ASSERT_EQ(sched_rules_load("/nonexistent/r.csv", &r, err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "cannot open '/nonexistent/r.csv'");

	ASSERT_EQ(zips_err(ZH "005,005,NY\n006,007,PR\n", err, sizeof(err)), 0);
	ASSERT_EQ(zips_err("zip3_lo,zip3_hi\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "z.csv:1: header must be");
	ASSERT_EQ(zips_err(ZH "005,005\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "z.csv:2: expected 3");
	ASSERT_EQ(zips_err(ZH "007,006,PR\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "z.csv:2: zip3_lo 7 is greater than zip3_hi 6");
	ASSERT_EQ(zips_err(ZH "005,1000,NY\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "z.csv:2: zip3_hi '1000'");
	ASSERT_EQ(zips_err(ZH "005,006,XX\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "z.csv:2: state 'XX' is not a known state code");
	ASSERT_EQ(zips_err(ZH "005,010,NY\n# gap\n\n010,011,MA\n", err, sizeof(err)), -1);
	ASSERT_CONTAINS(err, "z.csv:5: range 010-011 overlaps");
}

static void test_email_state(void)
{
	struct sched_zips z;
	char err[256];

	ASSERT_TRUE(sched_email_valid("a@b.co", 6));
	ASSERT_TRUE(sched_email_valid("  Jo.Doe+x%y_z-1@mail-1.example.ORG\t", 36));
	ASSERT_TRUE(!sched_email_valid("a@b.c", 5));          /* TLD too short */
	ASSERT_TRUE(!sched_email_valid("a@b.c0m", 7));        /* TLD not letters */
	ASSERT_TRUE(!sched_email_valid("a@.com", 6));         /* nothing before last dot */
	ASSERT_TRUE(sched_email_valid("a@x..com", 8));        /* "x." precedes the last dot */
	ASSERT_TRUE(!sched_email_valid("@b.com", 6));
	ASSERT_TRUE(!sched_email_valid("a@@b.com", 8));
	ASSERT_TRUE(!sched_email_valid("a@b@c.com", 9));
	ASSERT_TRUE(!sched_email_valid("a b@c.com", 9));
	ASSERT_TRUE(!sched_email_valid("a@b_c.com", 9));
	ASSERT_TRUE(!sched_email_valid("a@bcom", 6));
	ASSERT_TRUE(!sched_email_valid("a@b.com.", 8));
	ASSERT_TRUE(!sched_email_valid("abc", 3));
	ASSERT_TRUE(!sched_email_valid("a(b)@c.com", 10));

	ASSERT_EQ(sched_state_resolve(" ca ", 4), sched_state_index("CA", 2));
	ASSERT_EQ(sched_state_resolve("Dc", 2), sched_state_index("DC", 2));
	ASSERT_EQ(sched_state_resolve("ap", 2), sched_state_index("AP", 2));
	ASSERT_EQ(sched_state_resolve("XX", 2), -1);
	ASSERT_EQ(sched_state_resolve("CAL", 3), -1);
	ASSERT_EQ(sched_state_resolve("", 0), -1);
	ASSERT_EQ(sched_zips_load("conf/zip3_states.csv", &z, err, sizeof(err)), 0);
	ASSERT_EQ(sched_zip_state(&z, "90210", 5), sched_state_index("CA", 2));
	ASSERT_EQ(sched_zip_state(&z, " 10001-1234 ", 12), sched_state_index("NY", 2));
	ASSERT_EQ(sched_zip_state(&z, "10001 1234", 10), sched_state_index("NY", 2));
	ASSERT_EQ(sched_zip_state(&z, "2134", 4), sched_state_index("MA", 2));   /* 02134 */
	ASSERT_EQ(sched_zip_state(&z, "501", 3), sched_state_index("NY", 2));    /* 00501 */
	ASSERT_EQ(sched_zip_state(&z, "21", 2), -1);
	ASSERT_EQ(sched_zip_state(&z, "100011", 6), -1);
	ASSERT_EQ(sched_zip_state(&z, "10001x", 6), -1);
	ASSERT_EQ(sched_zip_state(&z, "1000a", 5), -1);
	ASSERT_EQ(sched_zip_state(&z, "2134.0", 6), -1);
	ASSERT_EQ(sched_zip_state(&z, "00001", 5), -1);   /* prefix 000: no state */
}

/* ---- exclusion windows at their edges, derived by hand from RULES.md, exclusion windows ---- */

static struct sched_opts opts;

static void load_default_opts(void)
{
	char err[512];

	sched_opts_default(&opts);
	if (sched_rules_load("conf/state_rules.csv", &opts.rules, err, sizeof(err)) ||
	    sched_zips_load("conf/zip3_states.csv", &opts.zips, err, sizeof(err)))
		UNIT_FAIL("%s", err);
}

static struct sched_contact contact(const char *st, const char *birth, const char *ed)
{
	struct sched_contact c = { .id = 1, .birth = SCHED_NODATE, .ed = SCHED_NODATE };
	int y, m, d;

	c.state = (int8_t)sched_state_index(st, 2);
	if (birth) {
		c.birth = D(birth);
		sched_civil(c.birth, &y, &m, &d);
		c.bm = (uint8_t)m;
		c.bd = (uint8_t)d;
	}
	if (ed) {
		c.ed = D(ed);
		sched_civil(c.ed, &y, &m, &d);
		c.em = (uint8_t)m;
		c.edd = (uint8_t)d;
	}
	return c;
}

/* The window [lo, hi] for contact c: day before and after are free, both ends are in. */
static void window_edges(const struct sched_contact *c, const char *lo, const char *hi, int reason,
			 const char *event)
{
	int r;
	int32_t a = SCHED_NODATE, w;

	w = sched_excluded(&opts, c, D(lo) - 1, &r, &a);
	if (r == reason)
		UNIT_FAIL("%s state %s: day before %s is excluded", fmt(c->birth), sched_state_code(c->state), lo);
	w = sched_excluded(&opts, c, D(lo), &r, &a);
	ASSERT_EQ(r, reason);
	ASSERT_STREQ(fmt(w), hi);
	ASSERT_STREQ(fmt(a), event);
	w = sched_excluded(&opts, c, D(hi), &r, &a);
	ASSERT_EQ(r, reason);
	ASSERT_STREQ(fmt(w), hi);
	sched_excluded(&opts, c, D(hi) + 1, &r, &a);
	if (r == reason)
		UNIT_FAIL("state %s: day after %s is excluded", sched_state_code(c->state), hi);
}

static void test_windows(void)
{
	struct sched_contact c;
	int r;
	int32_t a, w;

	load_default_opts();
	/* CA 30/60/60: born 03-15 -> [2024-12-15, 2025-05-14] */
	c = contact("CA", "1955-03-15", NULL);
	window_edges(&c, "2024-12-15", "2025-05-14", R_BDAY_WINDOW, "2025-03-15");
	/* ID 0/63/60, KY/OK 0/60/60, MD/VA 0/30/60: born 06-10 */
	c = contact("ID", "1960-06-10", NULL);
	window_edges(&c, "2025-04-11", "2025-08-12", R_BDAY_WINDOW, "2025-06-10");
	c = contact("KY", "1960-06-10", NULL);
	window_edges(&c, "2025-04-11", "2025-08-09", R_BDAY_WINDOW, "2025-06-10");
	c = contact("OK", "1960-06-10", NULL);
	window_edges(&c, "2025-04-11", "2025-08-09", R_BDAY_WINDOW, "2025-06-10");
	c = contact("MD", "1960-06-10", NULL);
	window_edges(&c, "2025-04-11", "2025-07-10", R_BDAY_WINDOW, "2025-06-10");
	c = contact("VA", "1960-06-10", NULL);
	window_edges(&c, "2025-04-11", "2025-07-10", R_BDAY_WINDOW, "2025-06-10");
	/* NV month start: born 05-15 -> B = 05-01 -> [2025-03-02, 2025-06-30], event 05-15 */
	c = contact("NV", "1963-05-15", NULL);
	window_edges(&c, "2025-03-02", "2025-06-30", R_BDAY_WINDOW, "2025-05-15");
	/* NV born 03-31: B = 03-01 of a leap year -> [2023-12-31 + 1 = 2024-01-01, 2024-04-30] */
	c = contact("NV", "1970-03-31", NULL);
	window_edges(&c, "2024-01-01", "2024-04-30", R_BDAY_WINDOW, "2024-03-31");
	/* OR 0/31/60: born 10-20 -> [2024-08-21, 2024-11-20] */
	c = contact("OR", "1959-10-20", NULL);
	window_edges(&c, "2024-08-21", "2024-11-20", R_BDAY_WINDOW, "2024-10-20");
	/* MO effective date 30/33/60: ed 06-15 -> [2025-03-17, 2025-07-18] */
	c = contact("MO", "1961-03-10", "2022-06-15");
	window_edges(&c, "2025-03-17", "2025-07-18", R_ED_WINDOW, "2025-06-15");
	/* windows crossing a year: CA born 12-31 -> [2024-10-02, 2025-03-01] */
	c = contact("CA", "1950-12-31", NULL);
	window_edges(&c, "2024-10-02", "2025-03-01", R_BDAY_WINDOW, "2024-12-31");
	/* Feb 29 births: common year B = 02-28, leap year B = 02-29 */
	c = contact("CA", "1952-02-29", NULL);
	window_edges(&c, "2024-11-30", "2025-04-29", R_BDAY_WINDOW, "2025-02-28");
	window_edges(&c, "2027-12-01", "2028-04-29", R_BDAY_WINDOW, "2028-02-29");
	/* year-round: every date, no window end */
	c = contact("NY", "1956-11-11", NULL);
	w = sched_excluded(&opts, &c, D("2024-10-01"), &r, &a);
	ASSERT_EQ(r, R_YEAR_ROUND);
	ASSERT_EQ(w, SCHED_NODATE);
	c = contact("CT", NULL, NULL);
	sched_excluded(&opts, &c, D("2031-07-04"), &r, &a);
	ASSERT_EQ(r, R_YEAR_ROUND);
	/* no rules, no anchor, unknown state */
	c = contact("TX", "1955-03-15", NULL);
	sched_excluded(&opts, &c, D("2025-03-15"), &r, &a);
	ASSERT_EQ(r, R_NONE);
	c = contact("CA", NULL, "2020-03-15");
	sched_excluded(&opts, &c, D("2025-03-15"), &r, &a);
	ASSERT_EQ(r, R_NONE);
	c = contact("XX", "1955-03-15", NULL);
	sched_excluded(&opts, &c, D("2025-03-15"), &r, &a);
	ASSERT_EQ(r, R_NONE);
}

/* ---- golden cases on real databases ---- */

static char dbpath[256];
static char warnings[8192];

static void collect(void *ud, int level, const char *msg)
{
	(void)ud;
	(void)level;
	size_t n = strlen(warnings);
	snprintf(warnings + n, sizeof(warnings) - n, "%s\n", msg);
}

static void sql(const char *text)
{
	sqlite3 *db;
	char *err = NULL;

	if (sqlite3_open(dbpath, &db) != SQLITE_OK || sqlite3_exec(db, text, NULL, NULL, &err))
		UNIT_FAIL("sql: %s: %s", text, err ? err : sqlite3_errmsg(db));
	sqlite3_free(err);
	sqlite3_close(db);
}

/* The first column of the first row of a query, as an integer (-1 on error). */
static int64_t sql_int(const char *text)
{
	sqlite3 *db;
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (sqlite3_open(dbpath, &db) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, text, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	else
		UNIT_FAIL("sql: %s: %s", text, sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static const char contacts_ddl[] =
	"CREATE TABLE contacts (id INTEGER PRIMARY KEY, first_name TEXT, email TEXT, state TEXT, "
	"zip_code TEXT, birth_date TEXT, effective_date TEXT);";

static void fresh_db(const char *name, const char *rows)
{
	snprintf(dbpath, sizeof(dbpath), "%s/%s.db", tmpdir, name);
	unlink(dbpath);
	sql(contacts_ddl);
	if (rows)
		sql(rows);
}

static int run_mode(enum sched_mode mode, FILE *csv, struct sched_report *rep, char *err,
		    size_t errlen)
{
	struct sched_io io = { .log = collect };
	int rc;

	warnings[0] = '\0';
	rc = sched_execute(&opts, dbpath, mode, csv, &io, rep);
	snprintf(err, errlen, "%s", io.err);
	return rc;
}

static int run(struct sched_report *rep)
{
	char err[1024];
	int rc = run_mode(SCHED_RUN, NULL, rep, err, sizeof(err));

	if (rc)
		UNIT_FAIL("run failed: %s", err);
	return rc;
}

/* The owned rows as "cid type date status reason (event)" lines. */
static char *dump(void)
{
	static char out[65536];
	sqlite3 *db;
	sqlite3_stmt *st;
	size_t n = 0;

	out[0] = '\0';
	sqlite3_open(dbpath, &db);
	if (sqlite3_prepare_v2(db,
			       "SELECT contact_id, email_type, scheduled_send_date, status, "
			       "coalesce(skip_reason, '-'), priority, event_year, event_month, event_day, "
			       "scheduled_send_time FROM email_schedules WHERE status IN "
			       "('pre-scheduled', 'skipped') ORDER BY contact_id, email_type, "
			       "scheduled_send_date", -1, &st, NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW && n < sizeof(out) - 200)
			n += (size_t)snprintf(out + n, sizeof(out) - n, "%lld %s %s %s %s %d %04d-%02d-%02d %s\n",
				  (long long)sqlite3_column_int64(st, 0), sqlite3_column_text(st, 1),
				  sqlite3_column_text(st, 2), sqlite3_column_text(st, 3),
				  sqlite3_column_text(st, 4), sqlite3_column_int(st, 5),
				  sqlite3_column_int(st, 6), sqlite3_column_int(st, 7),
				  sqlite3_column_int(st, 8), sqlite3_column_text(st, 9));
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return out;
}

static void expect_rows(const char *want)
{
	const char *got = dump();

	if (strcmp(got, want) != 0) {
		/* show the first differing line */
		const char *g = got, *w = want;
		while (*g && *g == *w) {
			g++;
			w++;
		}
		while (g > got && g[-1] != '\n') {
			g--;
			w--;
		}
		UNIT_FAIL("rows differ\n  want: %.*s\n  got:  %.*s", (int)strcspn(w, "\n"), w,
			  (int)strcspn(g, "\n"), g);
		fprintf(stderr, "--- got ---\n%s--- want ---\n%s", got, want);
	} else {
		unit_checks++;
	}
}

#define PRE "pre-scheduled - "
#define BW(st) "skipped Birthday exclusion window for " st " "
#define EW(st) "skipped Effective date exclusion window for " st " "
#define T " 08:30:00\n"

/* RULES.md, worked examples, every row; ids 3, 10, 11, 13, 14 are the bad rows that make N = 15. */
static const char example_rows[] =
	"INSERT INTO contacts (id, email, state, zip_code, birth_date, effective_date) VALUES "
	"(1, 'c1@example.com', 'TX', NULL, '1950-12-15', '2020-01-10'),"
	"(2, 'c2@example.com', 'CA', NULL, '1955-03-15', '2020-01-10'),"
	"(3, 'not-an-email', 'TX', NULL, '1950-01-01', NULL),"
	"(4, 'c4@example.com', 'NV', NULL, '1963-05-15', '2022-07-20'),"
	"(5, 'c5@example.com', 'MO', NULL, '1961-03-10', '2022-06-15'),"
	"(6, 'c6@example.com', 'NY', NULL, '1956-11-11', '2021-11-11'),"
	"(7, 'c7@example.com', 'TX', NULL, '1964-04-15', '2024-03-01'),"
	"(8, 'c8@example.com', 'CA', NULL, '1952-02-29', NULL),"
	"(9, 'c9@example.com', 'OR', NULL, '1959-10-20', '2023-08-15'),"
	"(10, 'c10@example.com', 'TX', NULL, '1961-02-30', NULL),"
	"(11, 'c11@example.com', 'TX', NULL, NULL, '2020/01/01'),"
	"(12, 'c12@example.com', 'CA', NULL, '1950-12-31', '2019-12-31'),"
	"(13, 'c13@example', 'TX', NULL, NULL, NULL),"
	"(14, 'c14@example.com', 'TX', NULL, '1960-01-01x', NULL),"
	"(15, 'c15@example.com', 'XX', NULL, '1970-10-05', '2020-10-05'),"
	"(16, NULL, 'TX', NULL, '1970-10-05', NULL),"
	"(17, '   ', 'TX', NULL, '1970-10-05', NULL);";

static const char example_want[] =
	"1 aep 2025-09-15 " PRE "30 2025-09-15" T
	"1 birthday 2024-12-01 " PRE "10 2024-12-15" T
	"1 effective_date 2024-12-11 " PRE "20 2025-01-10" T
	"2 aep 2025-09-15 " PRE "30 2025-09-15" T
	"2 birthday 2025-03-01 " BW("CA") "10 2025-03-15" T
	"2 effective_date 2024-12-11 " PRE "20 2025-01-10" T
	"2 post_window 2025-05-15 " PRE "40 2025-03-15" T
	"4 aep 2025-09-15 " PRE "30 2025-09-15" T
	"4 birthday 2025-05-01 " BW("NV") "10 2025-05-15" T
	"4 effective_date 2025-06-20 " BW("NV") "20 2025-07-20" T
	"4 post_window 2025-07-01 " PRE "40 2025-05-15" T
	"5 aep 2025-09-15 " PRE "30 2025-09-15" T
	"5 birthday 2025-02-24 " PRE "10 2025-03-10" T
	"5 effective_date 2025-05-16 " EW("MO") "20 2025-06-15" T
	"5 post_window 2025-07-19 " PRE "40 2025-06-15" T
	"6 aep 2025-09-15 skipped Year-round exclusion for NY 30 2025-09-15" T
	"6 birthday 2024-10-28 skipped Year-round exclusion for NY 10 2024-11-11" T
	"6 effective_date 2024-10-12 skipped Year-round exclusion for NY 20 2024-11-11" T
	"7 aep 2025-09-15 " PRE "30 2025-09-15" T
	"7 birthday 2025-04-01 " PRE "10 2025-04-15" T
	"8 aep 2025-09-15 " PRE "30 2025-09-15" T
	"8 birthday 2025-02-14 " BW("CA") "10 2025-02-28" T
	"8 post_window 2025-04-30 " PRE "40 2025-02-28" T
	"9 aep 2025-09-15 " BW("OR") "30 2025-09-15" T
	"9 birthday 2024-10-06 " BW("OR") "10 2024-10-20" T
	"9 effective_date 2025-07-16 " PRE "20 2025-08-15" T
	"9 post_window 2024-11-21 " PRE "40 2024-10-20" T
	"9 post_window 2025-11-21 " PRE "40 2025-10-20" T
	"12 aep 2025-09-15 " PRE "30 2025-09-15" T
	"12 birthday 2024-12-17 " BW("CA") "10 2024-12-31" T
	"12 effective_date 2024-12-01 " BW("CA") "20 2024-12-31" T
	"12 post_window 2025-03-02 " PRE "40 2024-12-31" T
	"15 aep 2025-09-15 " PRE "30 2025-09-15" T
	"15 birthday 2024-10-01 " PRE "10 2024-10-05" T
	"15 effective_date 2024-10-01 " PRE "20 2024-10-05" T;

static void test_worked_example(void)
{
	struct sched_report rep;
	char err[1024];

	load_default_opts();
	opts.today = D("2024-10-01");
	opts.run_id = "run-1";
	fresh_db("example", example_rows);
	if (run(&rep))
		return;
	expect_rows(example_want);
	ASSERT_EQ(rep.contacts, 17);
	ASSERT_EQ(rep.no_email, 2);
	ASSERT_EQ(rep.bad, 5);
	ASSERT_EQ(rep.valid, 10);
	ASSERT_EQ(rep.daily_cap, 50);
	ASSERT_EQ(rep.ed_limit, 15);
	ASSERT_EQ(rep.rows, 35);
	ASSERT_EQ(rep.inserted, 35);
	ASSERT_EQ(rep.skipped, 12);
	ASSERT_EQ(rep.pre_scheduled, 23);
	ASSERT_EQ(rep.unknown_state, 1);
	ASSERT_CONTAINS(warnings, "contacts id=3 email 'not-an-email' is not a valid email (contact skipped)");
	ASSERT_CONTAINS(warnings, "contacts id=10 birth_date '1961-02-30' is not a valid date (contact skipped)");
	ASSERT_CONTAINS(warnings, "contacts id=11 effective_date '2020/01/01' is not a valid date");
	ASSERT_CONTAINS(warnings, "contacts id=13 email 'c13@example'");
	ASSERT_CONTAINS(warnings, "contacts id=14 birth_date '1960-01-01x'");
	ASSERT_CONTAINS(warnings, "contacts id=15 state 'XX' is not a known state code");

	/* rows go in by date (then contact, type): ids follow the dates, so a day's rows share
	 * pages and the next day's changes touch few of them */
	ASSERT_EQ(sql_int("SELECT count(*) FROM email_schedules a JOIN email_schedules b "
			  "ON a.id < b.id AND (a.scheduled_send_date > b.scheduled_send_date OR "
			  "(a.scheduled_send_date = b.scheduled_send_date AND a.contact_id > b.contact_id))"), 0);
	/* a rerun with the same today changes nothing, read by one thread or two */
	opts.threads = 1;
	if (run(&rep))
		return;
	ASSERT_EQ(rep.unchanged, 35);
	opts.threads = 2;
	if (run(&rep))
		return;
	ASSERT_EQ(rep.unchanged, 35);
	ASSERT_EQ(rep.inserted + rep.updated + rep.deleted, 0);
	expect_rows(example_want);
	/* the dry run prints the same rows and would change nothing */
	char csvpath[300];
	snprintf(csvpath, sizeof(csvpath), "%s/example.csv", tmpdir);
	FILE *f = fopen(csvpath, "w+");
	ASSERT_EQ(run_mode(SCHED_DRY, f, &rep, err, sizeof(err)), 0);
	ASSERT_EQ(rep.unchanged, 35);
	ASSERT_EQ(rep.deleted, 0);
	rewind(f);
	char lines[40][160];
	int nl = 0;
	while (nl < 40 && fgets(lines[nl], sizeof(lines[nl]), f))
		nl++;
	ASSERT_EQ(nl, 36);
	ASSERT_STREQ(lines[0], "contact_id,email_type,scheduled_send_date,scheduled_send_time,status,"
		     "skip_reason,priority,event_year,event_month,event_day\n");
	ASSERT_STREQ(lines[1], "1,aep,2025-09-15,08:30:00,pre-scheduled,,30,2025,9,15\n");
	ASSERT_STREQ(lines[5], "2,birthday,2025-03-01,08:30:00,skipped,Birthday exclusion window for CA,"
		     "10,2025,3,15\n");
	ASSERT_STREQ(lines[35], "15,effective_date,2024-10-01,08:30:00,pre-scheduled,,20,2024,10,5\n");
	fclose(f);

	/* the next day, after the sender took contact 15's birthday row (RULES.md, worked examples) */
	sql("UPDATE email_schedules SET status = 'sent' WHERE contact_id = 15 AND email_type = 'birthday'");
	opts.today = D("2024-10-02");
	opts.run_id = "run-2";
	if (run(&rep))
		return;
	const char *got = dump();
	ASSERT_TRUE(strstr(got, "15 birthday") == NULL);
	ASSERT_CONTAINS(got, "15 effective_date 2024-10-02 " PRE "20 2024-10-05" T);
	/* the sent row is still there, untouched */
	sqlite3 *db;
	sqlite3_stmt *st;
	sqlite3_open(dbpath, &db);
	sqlite3_prepare_v2(db, "SELECT count(*) FROM email_schedules WHERE status = 'sent' AND "
			   "contact_id = 15 AND scheduled_send_date = '2024-10-01' AND "
			   "scheduler_run_id = 'run-1'", -1, &st, NULL);
	ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
	ASSERT_EQ(sqlite3_column_int(st, 0), 1);
	sqlite3_finalize(st);
	/* unchanged rows keep the run id of the run that wrote them */
	sqlite3_prepare_v2(db, "SELECT scheduler_run_id FROM email_schedules WHERE contact_id = 1 "
			   "AND email_type = 'aep'", -1, &st, NULL);
	ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
	ASSERT_STREQ((const char *)sqlite3_column_text(st, 0), "run-1");
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* Already-sent guard edges and the past-due rule. today 2024-10-02, born 10-05: A = 2024-10-05,
 * S0 = 2024-09-21, guard [2024-08-22, 2024-11-04]. */
static void test_guard_pastdue(void)
{
	struct sched_report rep;

	load_default_opts();
	opts.today = D("2024-10-02");
	opts.aep_enabled = false;
	fresh_db("guard",
		 "INSERT INTO contacts (id, email, state, birth_date) VALUES "
		 "(1, 'a@b.co', 'TX', '1970-10-05'), (2, 'a@b.co', 'TX', '1970-10-05'),"
		 "(3, 'a@b.co', 'TX', '1970-10-05'), (4, 'a@b.co', 'TX', '1970-10-05'),"
		 "(5, 'a@b.co', 'TX', '1970-10-02'), (6, 'a@b.co', 'TX', '1970-10-01'),"
		 "(7, 'a@b.co', 'CA', '1955-03-15'), (8, 'a@b.co', 'CA', '1955-03-15');"
		 "INSERT INTO contacts (id, email, state, effective_date) VALUES "
		 "(9, 'a@b.co', 'MO', '2016-02-29');"
		 "CREATE TABLE email_schedules (id INTEGER PRIMARY KEY, contact_id INTEGER, "
		 "email_type TEXT, scheduled_send_date TEXT, status TEXT);"
		 "INSERT INTO email_schedules (contact_id, email_type, scheduled_send_date, status) VALUES "
		 "(1, 'BIRTHDAY', '2024-08-22', 'sent'),"      /* first day of the guard */
		 "(2, 'birthday', '2024-08-21', 'sent'),"      /* day before: no guard */
		 "(3, 'birthday', '2024-11-04 09:00', NULL),"  /* last day (NULL status counts) */
		 "(4, 'birthday', '2024-11-05', 'delivered'),"  /* day after */
		 /* post-window 2025-05-15: guard [2025-04-15, 2025-06-14] */
		 "(7, 'post_window', '2025-04-15', 'sent'), (8, 'Post_Window', '2025-04-14', 'sent');");
	if (run(&rep))
		return;
	expect_rows("2 birthday 2024-10-02 " PRE "10 2024-10-05" T
		    "4 birthday 2024-10-02 " PRE "10 2024-10-05" T
		    "5 birthday 2024-10-02 " PRE "10 2024-10-02" T     /* event today */
		    "6 birthday 2025-09-17 " PRE "10 2025-10-01" T     /* event passed: next year */
		    "7 birthday 2025-03-01 " BW("CA") "10 2025-03-15" T
		    "8 birthday 2025-03-01 " BW("CA") "10 2025-03-15" T
		    "8 post_window 2025-05-15 " PRE "40 2025-03-15" T
		    /* Feb 29 effective date in MO: A = 2025-02-28, window [2024-11-30, 2025-04-02] */
		    "9 effective_date 2025-01-29 " EW("MO") "20 2025-02-28" T
		    "9 post_window 2025-04-03 " PRE "40 2025-02-28" T);
}

/* Frequency limit: sent newsletter rows on 11-25 and 11-26; birthday (priority 10) on
 * 12-01 makes 3 in [11-25, 12-24]; ED on 11-20 would make 4 in [11-20, 12-19]. */
static void test_frequency(void)
{
	struct sched_report rep;

	load_default_opts();
	opts.today = D("2024-10-01");
	fresh_db("freq",
		 "INSERT INTO contacts (id, email, state, birth_date, effective_date) VALUES "
		 "(1, 'a@b.co', 'TX', '1950-12-15', '2020-12-20'),"
		 "(2, 'a@b.co', 'TX', '1950-12-15', '2020-12-20');"
		 "CREATE TABLE email_schedules (id INTEGER PRIMARY KEY, contact_id INTEGER, "
		 "email_type TEXT, scheduled_send_date TEXT, status TEXT);"
		 "INSERT INTO email_schedules (contact_id, email_type, scheduled_send_date, status) VALUES "
		 "(1, 'newsletter', '2024-11-25', 'sent'), (1, 'newsletter', '2024-11-26', 'scheduled'),"
		 "(2, 'newsletter', '2024-10-20', 'sent'), (2, 'newsletter', '2024-10-21', 'sent'),"
		 "(2, 'campaign', '2024-11-19', 'pre-scheduled');");
	if (run(&rep))
		return;
	/* contact 2: sent 10-20, 10-21 are 31 days before 11-20: outside every window holding it;
	 * its pre-scheduled campaign row is not counted. */
	expect_rows("1 aep 2025-09-15 " PRE "30 2025-09-15" T
		    "1 birthday 2024-12-01 " PRE "10 2024-12-15" T
		    "1 effective_date 2024-11-20 skipped Frequency limit exceeded 20 2024-12-20" T
		    "2 aep 2025-09-15 " PRE "30 2025-09-15" T
		    "2 birthday 2024-12-01 " PRE "10 2024-12-15" T
		    "2 campaign 2024-11-19 " PRE "10 0000-00-00 08:30:00\n"
		    "2 effective_date 2024-11-20 " PRE "20 2024-12-20" T);
	ASSERT_EQ(rep.skipped, 1);
	/* max 1 per 30 days: birthday first (priority), ED 19 days earlier loses, AEP far away */
	opts.max_per_period = 1;
	if (run(&rep))
		return;
	expect_rows("1 aep 2025-09-15 " PRE "30 2025-09-15" T
		    "1 birthday 2024-12-01 skipped Frequency limit exceeded 10 2024-12-15" T
		    "1 effective_date 2024-11-20 skipped Frequency limit exceeded 20 2024-12-20" T
		    "2 aep 2025-09-15 " PRE "30 2025-09-15" T
		    "2 birthday 2024-12-01 " PRE "10 2024-12-15" T
		    "2 campaign 2024-11-19 " PRE "10 0000-00-00 08:30:00\n"
		    "2 effective_date 2024-11-20 skipped Frequency limit exceeded 20 2024-12-20" T);
	ASSERT_EQ(rep.updated, 2);
	ASSERT_EQ(rep.unchanged, 4);
}

/* Smoothing: "1-effective_date-2025" mod 3 = 2 -> j = +1; "42-..." mod 3 = 0 -> j = -1. */
static void test_smoothing(void)
{
	struct sched_report rep;

	load_default_opts();
	opts.today = D("2024-10-01");
	opts.aep_enabled = false;
	opts.ed_soft_limit = 1;     /* ed_limit = min(1, 15) */
	fresh_db("smooth",
		 "INSERT INTO contacts (id, email, state, effective_date) VALUES "
		 "(1, 'a@b.co', 'TX', '2020-01-10'), (42, 'a@b.co', 'TX', '2020-01-10');");
	if (run(&rep))
		return;
	ASSERT_EQ(rep.ed_limit, 1);
	expect_rows("1 effective_date 2024-12-12 " PRE "20 2025-01-10" T
		    "42 effective_date 2024-12-10 " PRE "20 2025-01-10" T);
	/* at the limit nothing moves */
	opts.ed_soft_limit = 2;
	run(&rep);
	expect_rows("1 effective_date 2024-12-11 " PRE "20 2025-01-10" T
		    "42 effective_date 2024-12-11 " PRE "20 2025-01-10" T);
	/* window 1: j = 0 for everyone */
	opts.ed_soft_limit = 1;
	opts.ed_window = 1;
	run(&rep);
	expect_rows("1 effective_date 2024-12-11 " PRE "20 2025-01-10" T
		    "42 effective_date 2024-12-11 " PRE "20 2025-01-10" T);
	/* never before today: on 12-25 both are past due; 42 would go to 12-24 and stays */
	opts.ed_window = -1;
	opts.today = D("2024-12-25");
	run(&rep);
	expect_rows("1 effective_date 2024-12-26 " PRE "20 2025-01-10" T
		    "42 effective_date 2024-12-25 " PRE "20 2025-01-10" T);
	/* never into an exclusion window: contact 1 in CA, born 03-12, has its 2025 birthday
	 * window from 2024-12-12 (B - 90), so T = 12-11 + 1 is excluded and it stays */
	sql("UPDATE contacts SET state = 'CA', birth_date = '1960-03-12' WHERE id = 1");
	opts.today = D("2024-10-01");
	run(&rep);
	expect_rows("1 birthday 2025-02-26 " BW("CA") "10 2025-03-12" T
		    "1 effective_date 2024-12-11 " PRE "20 2025-01-10" T
		    "1 post_window 2025-05-12 " PRE "40 2025-03-12" T
		    "42 effective_date 2024-12-10 " PRE "20 2025-01-10" T);
}

/* Daily cap with overflow: cap 2 (1% of 4 -> 0 -> min 2). */
static void test_daily_cap(void)
{
	struct sched_report rep;

	load_default_opts();
	opts.today = D("2024-10-01");
	opts.aep_enabled = false;
	opts.cap_percent = 1;
	opts.min_daily_cap = 2;
	fresh_db("cap",
		 "INSERT INTO contacts (id, email, state, birth_date) VALUES "
		 "(1, 'a@b.co', 'TX', '1950-12-15'), (2, 'a@b.co', 'TX', '1950-12-15'),"
		 "(3, 'a@b.co', 'TX', '1950-12-15'), (4, 'a@b.co', 'TX', '1950-12-15');"
		 "CREATE TABLE email_schedules (id INTEGER PRIMARY KEY, contact_id INTEGER, "
		 "email_type TEXT, scheduled_send_date TEXT, status TEXT);"
		 "INSERT INTO email_schedules (contact_id, email_type, scheduled_send_date, status) VALUES "
		 "(99, 'newsletter', '2024-12-02', 'sent');");
	if (run(&rep))
		return;
	ASSERT_EQ(rep.daily_cap, 2);
	/* 12-01: 4 > 2, keep 1, 2; 12-02: base 1, room 1, keep 3; 12-03: 4 */
	expect_rows("1 birthday 2024-12-01 " PRE "10 2024-12-15" T
		    "2 birthday 2024-12-01 " PRE "10 2024-12-15" T
		    "3 birthday 2024-12-02 " PRE "10 2024-12-15" T
		    "4 birthday 2024-12-03 " PRE "10 2024-12-15" T);

	/* pinned: contact 1 (CA, born 03-15: window from 2024-12-15) has its ED on 12-14, the
	 * day before its window, so it stays; priority puts the birthdays of 2..4 first but
	 * only room - pinned = 1 of them stays. ed_limit = min(50, 0) = 0 smooths contact 1's
	 * ED by +1 into 12-15, excluded, so it stays on 12-14. */
	fresh_db("pinned",
		 "INSERT INTO contacts (id, email, state, birth_date, effective_date) VALUES "
		 "(1, 'a@b.co', 'CA', '1955-03-15', '2020-01-13'), (2, 'a@b.co', 'TX', '1950-12-28', NULL),"
		 "(3, 'a@b.co', 'TX', '1950-12-28', NULL), (4, 'a@b.co', 'TX', '1950-12-28', NULL);");
	if (run(&rep))
		return;
	ASSERT_EQ(rep.ed_limit, 0);
	expect_rows("1 birthday 2025-03-01 " BW("CA") "10 2025-03-15" T
		    "1 effective_date 2024-12-14 " PRE "20 2025-01-13" T
		    "1 post_window 2025-05-15 " PRE "40 2025-03-15" T
		    "2 birthday 2024-12-14 " PRE "10 2024-12-28" T
		    "3 birthday 2024-12-15 " PRE "10 2024-12-28" T
		    "4 birthday 2024-12-15 " PRE "10 2024-12-28" T);
	/* carried rows keep their O and go first: 5, 6 born 12-29 are fresh on 12-15 */
	sql("INSERT INTO contacts (id, email, state, birth_date) VALUES "
	    "(5, 'a@b.co', 'TX', '1950-12-29'), (6, 'a@b.co', 'TX', '1950-12-29');");
	if (run(&rep))
		return;
	expect_rows("1 birthday 2025-03-01 " BW("CA") "10 2025-03-15" T
		    "1 effective_date 2024-12-14 " PRE "20 2025-01-13" T
		    "1 post_window 2025-05-15 " PRE "40 2025-03-15" T
		    "2 birthday 2024-12-14 " PRE "10 2024-12-28" T
		    "3 birthday 2024-12-15 " PRE "10 2024-12-28" T
		    "4 birthday 2024-12-15 " PRE "10 2024-12-28" T
		    "5 birthday 2024-12-16 " PRE "10 2024-12-29" T
		    "6 birthday 2024-12-16 " PRE "10 2024-12-29" T);
}

/* Bad rows: default mode skips the contact (and drops its old rows); strict fails first. */
static void test_bad_rows(void)
{
	struct sched_report rep;
	char err[1024];

	load_default_opts();
	opts.today = D("2024-10-01");
	opts.aep_enabled = false;
	fresh_db("bad",
		 "INSERT INTO contacts (id, email, state, birth_date) VALUES "
		 "(1, 'a@b.co', 'TX', '1950-12-15'), (2, 'a@b.co', 'TX', '1950-12-15');");
	if (run(&rep))
		return;
	expect_rows("1 birthday 2024-12-01 " PRE "10 2024-12-15" T
		    "2 birthday 2024-12-01 " PRE "10 2024-12-15" T);
	sql("UPDATE contacts SET birth_date = '1950-02-30' WHERE id = 2");
	opts.strict = true;
	ASSERT_EQ(run_mode(SCHED_RUN, NULL, &rep, err, sizeof(err)), 1);
	ASSERT_STREQ(err, "contacts id=2 birth_date '1950-02-30' is not a valid date (strict = 1)");
	expect_rows("1 birthday 2024-12-01 " PRE "10 2024-12-15" T
		    "2 birthday 2024-12-01 " PRE "10 2024-12-15" T);
	opts.strict = false;
	if (run(&rep))
		return;
	ASSERT_EQ(rep.bad, 1);
	ASSERT_EQ(rep.deleted, 1);
	ASSERT_CONTAINS(warnings, "contacts id=2 birth_date '1950-02-30' is not a valid date (contact skipped)");
	expect_rows("1 birthday 2024-12-01 " PRE "10 2024-12-15" T);
}

/* Unknown states: ZIP fallback, no_rules and skip policies. */
static void test_states(void)
{
	struct sched_report rep;

	load_default_opts();
	opts.today = D("2024-10-01");
	opts.aep_enabled = false;
	fresh_db("states",
		 "INSERT INTO contacts (id, email, state, zip_code, birth_date) VALUES "
		 "(1, 'a@b.co', NULL, '90210', '1955-03-15'),"     /* CA by ZIP */
		 "(2, 'a@b.co', 'ZZ', '10001', '1955-03-15'),"     /* NY by ZIP: year-round */
		 "(3, 'a@b.co', '', NULL, '1955-03-15'),"          /* unknown */
		 "(4, 'a@b.co', 'tx', '90210', '1955-03-15');"     /* state wins over ZIP */
		 "UPDATE contacts SET zip_code = 2134 WHERE id = 3;");  /* MA as an integer ZIP */
	if (run(&rep))
		return;
	expect_rows("1 birthday 2025-03-01 " BW("CA") "10 2025-03-15" T
		    "1 post_window 2025-05-15 " PRE "40 2025-03-15" T
		    "2 birthday 2025-03-01 skipped Year-round exclusion for NY 10 2025-03-15" T
		    "3 birthday 2025-03-01 skipped Year-round exclusion for MA 10 2025-03-15" T
		    "4 birthday 2025-03-01 " PRE "10 2025-03-15" T);
	ASSERT_EQ(rep.unknown_state, 1);
	ASSERT_CONTAINS(warnings, "contacts id=2 state 'ZZ' is not a known state code");
	sql("UPDATE contacts SET zip_code = '00001' WHERE id = 3");
	opts.unknown_skip = true;
	run(&rep);
	ASSERT_EQ(rep.no_state, 1);
	ASSERT_TRUE(strstr(dump(), "\n3 ") == NULL);
	opts.unknown_skip = false;
	run(&rep);
	ASSERT_CONTAINS(dump(), "3 birthday 2025-03-01 " PRE "10 2025-03-15" T);
}

/* Failed underwriting: latest eligibility answer by (created_at, id); JSON true or "true". */
static void test_underwriting(void)
{
	struct sched_report rep;
	char err[1024];

	load_default_opts();
	opts.today = D("2024-10-01");
	opts.exclude_fu = true;
	fresh_db("uw",
		 "INSERT INTO contacts (id, email, state, birth_date) VALUES "
		 "(1, 'a@b.co', 'TX', '1950-12-15'), (2, 'a@b.co', 'TX', '1950-12-15'),"
		 "(3, 'a@b.co', 'TX', '1950-12-15'), (4, 'a@b.co', 'TX', '1950-12-15'),"
		 "(5, 'a@b.co', 'CA', '1955-03-15');");
	ASSERT_EQ(run_mode(SCHED_RUN, NULL, &rep, err, sizeof(err)), 1);
	ASSERT_CONTAINS(err, "has no table contact_events");
	sql("CREATE TABLE contact_events (id INTEGER PRIMARY KEY, contact_id INTEGER, event_type TEXT, "
	    "metadata TEXT, created_at TEXT);"
	    "INSERT INTO contact_events VALUES "
	    "(1, 1, 'eligibility_answered', '{\"has_medical_conditions\": true}', '2024-01-01'),"
	    "(2, 2, 'eligibility_answered', '{\"has_medical_conditions\": true}', '2024-01-01'),"
	    "(3, 2, 'eligibility_answered', '{\"has_medical_conditions\": false}', '2024-02-01'),"
	    "(4, 3, 'eligibility_answered', '{\"has_medical_conditions\": false}', NULL),"
	    "(5, 3, 'eligibility_answered', '{\"has_medical_conditions\": \"true\"}', '2023-01-01'),"
	    "(6, 4, 'eligibility_answered', '{\"has_medical_conditions\": true}', '2024-01-01'),"
	    "(7, 4, 'eligibility_answered', 'not json', '2024-01-01'),"
	    "(8, 5, 'eligibility_answered', '{\"has_medical_conditions\": 1}', '2024-01-01'),"
	    "(9, 1, 'other', '{\"has_medical_conditions\": false}', '2025-01-01');");
	if (run(&rep))
		return;
	expect_rows("1 aep 2025-09-15 " PRE "30 2025-09-15" T
		    "2 aep 2025-09-15 " PRE "30 2025-09-15" T
		    "2 birthday 2024-12-01 " PRE "10 2024-12-15" T
		    "3 aep 2025-09-15 " PRE "30 2025-09-15" T
		    "4 aep 2025-09-15 " PRE "30 2025-09-15" T
		    "4 birthday 2024-12-01 " PRE "10 2024-12-15" T
		    "5 aep 2025-09-15 " PRE "30 2025-09-15" T);
}

/* The file's bytes (NULL if unreadable); *n its size. */
static unsigned char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	unsigned char *b = NULL;
	long sz;

	if (f && fseek(f, 0, SEEK_END) == 0 && (sz = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (b = malloc((size_t)sz)) && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
		free(b);
		b = NULL;
	}
	*n = b ? (size_t)sz : 0;
	if (f)
		fclose(f);
	return b;
}

/* A child that writes through vfs with a small cache (pages spill into the database file
 * midway, each spill after a journal sync) and dies without committing: a crash. */
static void crash_midway(const char *vfs)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		sqlite3 *db;
		if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, vfs) != SQLITE_OK ||
		    sqlite3_exec(db, "PRAGMA cache_size = 20; BEGIN; "
				 "UPDATE b SET x = randomblob(900) WHERE id % 3 != 0", NULL, NULL,
				 NULL) != SQLITE_OK)
			_exit(1);
		_exit(0);           /* the journal's buffer is lost with the process */
	}
	ASSERT_TRUE(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
		    WEXITSTATUS(st) == 0);
}

/* The stage's VFS gathers the journal's writes (sched_vfs.c). A crash midway leaves a hot
 * journal that restores the file byte for byte (the database was never ahead of the
 * journal on disk); a transaction that spills and rolls back leaves the file
 * byte-identical; the same one committed passes integrity_check and leaves no journal. */
static void test_journal_vfs(void)
{
	const char *vfs = sched_vfs();
	unsigned char *before, *after;
	size_t nb, na;
	char jpath[300];
	sqlite3 *db;

	ASSERT_STREQ(vfs ? vfs : "(none)", SCHED_VFS);
	fresh_db("vfs", "CREATE TABLE b (id INTEGER PRIMARY KEY, x BLOB);"
		 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
		 "INSERT INTO b SELECT i, randomblob(900) FROM n");
	snprintf(jpath, sizeof(jpath), "%s-journal", dbpath);
	before = slurp(dbpath, &nb);
	crash_midway(vfs);
	ASSERT_EQ(access(jpath, F_OK), 0);
	ASSERT_EQ(sql_int("SELECT count(*) FROM b"), 3000);        /* rolls the journal back */
	after = slurp(dbpath, &na);
	ASSERT_TRUE(before && after && na == nb && !memcmp(before, after, nb));
	free(after);
	for (int commit = 0; commit < 2; commit++) {
		ASSERT_EQ(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, vfs), SQLITE_OK);
		ASSERT_EQ(sqlite3_exec(db, "PRAGMA cache_size = 20; BEGIN; "
				       "UPDATE b SET x = randomblob(900) WHERE id % 3 != 0; "
				       "DELETE FROM b WHERE id % 7 = 0", NULL, NULL, NULL), SQLITE_OK);
		ASSERT_EQ(sqlite3_exec(db, commit ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL),
			  SQLITE_OK);
		sqlite3_close(db);
		ASSERT_EQ(access(jpath, F_OK), -1);
		after = slurp(dbpath, &na);
		if (!commit)
			ASSERT_TRUE(before && after && na == nb && !memcmp(before, after, nb));
		else
			ASSERT_TRUE(after && (na != nb || memcmp(before, after, nb)));
		free(after);
	}
	free(before);
	ASSERT_EQ(sql_int("SELECT count(*) FROM b"), 3000 - 3000 / 7);
	ASSERT_EQ(sql_int("SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
}

/* The old owned rows read in any rowid order are matched to the new ones by key: the
 * counting sort on dense contact ids (with a contact of more than 16 rows), and qsort when
 * ids are far apart or not integers. Every right row stays unchanged (so the merge met
 * it), every other one is deleted, nothing is inserted. */
static void test_old_row_order(void)
{
	static const char cols[] = "contact_id, email_type, scheduled_send_date, scheduled_send_time, "
		"status, skip_reason, priority, event_year, event_month, event_day, scheduler_run_id";
	char q[2048];
	struct sched_report rep;

	for (int spread = 0; spread < 2; spread++) {
		load_default_opts();
		opts.today = D("2024-10-01");
		opts.threads = 1 + spread;
		fresh_db(spread ? "order-spread" : "order-dense", example_rows);
		if (run(&rep))
			return;
		/* the right rows again, now in descending key order of rowid, and 20 stale rows
		 * of contact 5 between them */
		snprintf(q, sizeof(q), "CREATE TABLE t AS SELECT %s FROM email_schedules; "
			 "DELETE FROM email_schedules; "
			 "INSERT INTO email_schedules (%s) SELECT %s FROM t WHERE contact_id > 5 "
			 "ORDER BY contact_id DESC, email_type DESC, scheduled_send_date DESC; "
			 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20) "
			 "INSERT INTO email_schedules (contact_id, email_type, scheduled_send_date, status) "
			 "SELECT 5, 'aep', date('2020-01-01', '+' || i || ' days'), 'pre-scheduled' FROM n; "
			 "INSERT INTO email_schedules (%s) SELECT %s FROM t WHERE contact_id <= 5 "
			 "ORDER BY contact_id DESC, email_type DESC, scheduled_send_date DESC; DROP TABLE t",
			 cols, cols, cols, cols, cols);
		sql(q);
		if (spread)
			sql("INSERT INTO email_schedules (contact_id, email_type, scheduled_send_date, status) "
			    "VALUES (1000000000000, 'aep', '2025-09-15', 'pre-scheduled'), "
			    "('c1', 'aep', '2025-09-15', 'skipped'), (-7, 'birthday', '2025-01-01', 'skipped')");
		if (run(&rep))
			return;
		ASSERT_EQ(rep.unchanged, 35);
		ASSERT_EQ(rep.deleted, spread ? 23 : 20);
		ASSERT_EQ(rep.inserted, 0);
		ASSERT_EQ(rep.updated, 0);
		ASSERT_EQ(rep.ignored, 0);
		expect_rows(example_want);
	}
}

/* A row whose date moves (same contact and type) in a table the stage made is updated in
 * place: it keeps its id, and every other column is as an insert would leave it. A dry run
 * counts the same moves. */
static void test_moves(void)
{
	struct sched_report rep;
	char err[1024], q[512];
	int64_t id1;

	load_default_opts();
	opts.today = D("2024-10-02");
	opts.aep_enabled = false;
	/* 1: birthday lead begun (S = today, moves each day); 2: birthday 2024-12-11 */
	fresh_db("moves", "INSERT INTO contacts (id, email, state, birth_date) VALUES "
		 "(1, 'a@b.co', 'TX', '1970-10-05'), (2, 'a@b.co', 'TX', '1970-12-25')");
	if (run(&rep))
		return;
	ASSERT_EQ(rep.inserted, 2);
	sql("UPDATE email_schedules SET batch_id = 'b1', metadata = 'm', "
	    "created_at = '2000-01-01 00:00:00', scheduler_run_id = 'old'");
	id1 = sql_int("SELECT id FROM email_schedules WHERE contact_id = 1");
	opts.today = D("2024-10-04");
	ASSERT_EQ(run_mode(SCHED_DRY, NULL, &rep, err, sizeof(err)), 0);
	ASSERT_EQ(rep.moved, 1);
	ASSERT_EQ(rep.updated, 1);
	ASSERT_EQ(rep.inserted, 0);
	ASSERT_EQ(rep.deleted, 0);
	opts.today = D("2024-10-03");
	if (run(&rep))
		return;
	ASSERT_EQ(rep.moved, 1);
	ASSERT_EQ(rep.updated, 1);
	ASSERT_EQ(rep.inserted, 0);
	ASSERT_EQ(rep.deleted, 0);
	ASSERT_EQ(rep.unchanged, 1);
	snprintf(q, sizeof(q), "SELECT count(*) FROM email_schedules WHERE id = %lld AND "
		 "contact_id = 1 AND email_type = 'birthday' AND scheduled_send_date = '2024-10-03' "
		 "AND batch_id IS NULL AND metadata IS NULL AND created_at <> '2000-01-01 00:00:00' "
		 "AND scheduler_run_id = '%s'", (long long)id1, opts.run_id);
	ASSERT_EQ(sql_int(q), 1);
	ASSERT_EQ(sql_int("SELECT count(*) FROM email_schedules WHERE contact_id = 2 AND "
			  "batch_id = 'b1' AND scheduler_run_id = 'old'"), 1);
	ASSERT_EQ(sql_int("SELECT count(*) FROM email_schedules"), 2);
}

/* Every owned row of the database at dbpath with its id, one line each (rows_equal). */
static char *dump_ids(const char *path)
{
	static char out[2][4 << 20];
	static int which;
	char *o = out[which ^= 1];
	size_t n = 0;
	sqlite3 *db;
	sqlite3_stmt *st;

	o[0] = '\0';
	sqlite3_open(path, &db);
	if (sqlite3_prepare_v2(db, "SELECT id, contact_id, email_type, scheduled_send_date, status, "
			       "coalesce(skip_reason, '-'), priority, event_year, event_month, event_day "
			       "FROM email_schedules ORDER BY contact_id, email_type, "
			       "scheduled_send_date", -1, &st, NULL) == SQLITE_OK) {
		while (sqlite3_step(st) == SQLITE_ROW && n < sizeof(out[0]) - 200)
			n += (size_t)snprintf(o + n, sizeof(out[0]) - n, "%lld %lld %s %s %s %s %d %d %d %d\n",
					      (long long)sqlite3_column_int64(st, 0),
					      (long long)sqlite3_column_int64(st, 1),
					      sqlite3_column_text(st, 2), sqlite3_column_text(st, 3),
					      sqlite3_column_text(st, 4), sqlite3_column_text(st, 5),
					      sqlite3_column_int(st, 6), sqlite3_column_int(st, 7),
					      sqlite3_column_int(st, 8), sqlite3_column_int(st, 9));
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return o;
}

static void copy_file(const char *from, const char *to)
{
	char cmd[700];

	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
	if (system(cmd) != 0)
		UNIT_FAIL("%s", cmd);
}

#define ROWS_LINE "the database as the last run read and left it (rows sidecar"

/* One day on both databases: "rows" (fingerprint on, two threads: the rows sidecar and
 * contacts read in chunks by both threads) and "ref" (fingerprint off, one thread: every
 * row read by one reader). Everything they say and write must be the same; *used says
 * whether the rows sidecar replaced the read. */
static int rows_threads = 2;                /* day_both's threads on "rows" */

static void day_both(const char *rows, const char *ref, const char *day, bool *used)
{
	struct sched_report a, b;
	char wa[sizeof(warnings)], *p;

	opts.today = D(day);
	opts.fingerprint = true;
	opts.threads = rows_threads;
	snprintf(dbpath, sizeof(dbpath), "%s", rows);
	if (run(&a))
		return;
	snprintf(wa, sizeof(wa), "%s", warnings);
	*used = (p = strstr(wa, ROWS_LINE)) != NULL;
	if (p) {                            /* the one line the reference cannot say */
		char *nl = strchr(p, '\n');
		char *bol = p;
		while (bol > wa && bol[-1] != '\n')
			bol--;
		memmove(bol, nl + 1, strlen(nl + 1) + 1);
	}
	opts.fingerprint = false;
	opts.threads = 1;
	snprintf(dbpath, sizeof(dbpath), "%s", ref);
	if (run(&b))
		return;
	ASSERT_STREQ(wa, warnings);
	ASSERT_EQ(a.contacts, b.contacts);
	ASSERT_EQ(a.valid, b.valid);
	ASSERT_EQ(a.bad, b.bad);
	ASSERT_EQ(a.no_email, b.no_email);
	ASSERT_EQ(a.rows, b.rows);
	ASSERT_EQ(a.inserted, b.inserted);
	ASSERT_EQ(a.updated, b.updated);
	ASSERT_EQ(a.moved, b.moved);
	ASSERT_EQ(a.deleted, b.deleted);
	ASSERT_EQ(a.unchanged, b.unchanged);
	ASSERT_TRUE(!strcmp(dump_ids(rows), dump_ids(ref)));
}

/* The rows sidecar (sched_rows.c) and the contacts read by two threads: the next day's run
 * that trusts the sidecar says and writes exactly what a full read by one thread does, and
 * any change to the file or the sidecar, or another input, means the full read. */
static void test_rows_sidecar(void)
{
	char rows[200], ref[200], side[220];
	bool used = false;

	load_default_opts();
	opts.run_id = "rows";
	snprintf(rows, sizeof(rows), "%s/rows.db", tmpdir);
	snprintf(ref, sizeof(ref), "%s/rowsref.db", tmpdir);
	snprintf(side, sizeof(side), "%s.ferry-sched-rows", rows);
	/* 20,000 contacts: 5 chunks of 4,096 ids; a bad email every 997 ids (warnings in
	 * every chunk), dates spread over the year */
	fresh_db("rows", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
		 "WHERE i < 20000) INSERT INTO contacts (id, email, state, birth_date, "
		 "effective_date) SELECT i, CASE WHEN i % 997 = 0 THEN 'bad' || i ELSE "
		 "'c' || i || '@x.co' END, CASE WHEN i % 3 = 0 THEN 'CA' ELSE 'TX' END, "
		 "printf('19%02d-%02d-%02d', 40 + i % 50, 1 + i % 12, 1 + i % 28), "
		 "printf('20%02d-%02d-%02d', 10 + i % 13, 1 + (i * 7) % 12, 1 + (i * 3) % 28) FROM n");
	copy_file(rows, ref);
	day_both(rows, ref, "2024-10-01", &used);
	ASSERT_TRUE(!used);                 /* a first run: nothing to trust */
	ASSERT_EQ(access(side, F_OK), 0);
	day_both(rows, ref, "2024-10-02", &used);
	ASSERT_TRUE(used);
	/* a rerun of that day is a fingerprint hit: it replays the warnings, not that line */
	opts.fingerprint = true;
	snprintf(dbpath, sizeof(dbpath), "%s", rows);
	struct sched_report rep;
	if (run(&rep))
		return;
	ASSERT_TRUE(rep.reused);
	ASSERT_TRUE(strstr(warnings, "is not a valid email") != NULL);
	ASSERT_TRUE(strstr(warnings, ROWS_LINE) == NULL);
	/* threads = 1: the sidecar read, and written, on the one thread (days 3 and 4) */
	rows_threads = 1;
	day_both(rows, ref, "2024-10-03", &used);
	ASSERT_TRUE(used);
	/* another writer changes one owned row: the file's tag differs */
	snprintf(dbpath, sizeof(dbpath), "%s", rows);
	sql("UPDATE email_schedules SET priority = 99 WHERE id = (SELECT min(id) FROM email_schedules)");
	snprintf(dbpath, sizeof(dbpath), "%s", ref);
	sql("UPDATE email_schedules SET priority = 99 WHERE id = (SELECT min(id) FROM email_schedules)");
	day_both(rows, ref, "2024-10-04", &used);
	ASSERT_TRUE(!used);
	rows_threads = 2;
	day_both(rows, ref, "2024-10-05", &used);
	ASSERT_TRUE(used);
	/* a damaged sidecar (one byte of a row) */
	FILE *f = fopen(side, "r+b");
	ASSERT_TRUE(f != NULL);
	if (f) {
		fseek(f, 4096, SEEK_SET);
		int c = fgetc(f);
		fseek(f, 4096, SEEK_SET);
		fputc(c ^ 1, f);
		fclose(f);
	}
	day_both(rows, ref, "2024-10-06", &used);
	ASSERT_TRUE(!used);
	/* another input (the send time is in every row) */
	snprintf(opts.send_time, sizeof(opts.send_time), "09:00:00");
	day_both(rows, ref, "2024-10-07", &used);
	ASSERT_TRUE(!used);
	day_both(rows, ref, "2024-10-08", &used);
	ASSERT_TRUE(used);
	/* a run with the fingerprint off leaves a sidecar of an older file: not trusted */
	opts.today = D("2024-10-09");
	opts.fingerprint = false;
	snprintf(dbpath, sizeof(dbpath), "%s", rows);
	if (run(&rep))
		return;
	snprintf(dbpath, sizeof(dbpath), "%s", ref);
	if (run(&rep))
		return;
	day_both(rows, ref, "2024-10-10", &used);
	ASSERT_TRUE(!used);
	/* a run that died writing its rows sidecar left BASE.PID.tmp: the next run removes it
	 * (a live writer's, by pid, is kept) */
	char dead[300], live[300];
	snprintf(dead, sizeof(dead), "%s.999999999.tmp", side);
	snprintf(live, sizeof(live), "%s.%ld.tmp", side, (long)getppid());
	fclose(fopen(dead, "w"));
	fclose(fopen(live, "w"));
	day_both(rows, ref, "2024-10-11", &used);
	ASSERT_TRUE(used);
	ASSERT_TRUE(access(dead, F_OK) != 0);
	ASSERT_EQ(access(live, F_OK), 0);
	unlink(live);
}

/* Schema errors, and ownership: rows not owned are never touched. */
static void test_schema_and_ownership(void)
{
	struct sched_report rep;
	char err[1024];

	load_default_opts();
	opts.today = D("2024-10-01");
	snprintf(dbpath, sizeof(dbpath), "%s/none.db", tmpdir);
	ASSERT_EQ(run_mode(SCHED_RUN, NULL, &rep, err, sizeof(err)), 1);
	ASSERT_CONTAINS(err, "cannot open database '");
	fresh_db("nocol", NULL);
	sql("DROP TABLE contacts; CREATE TABLE contacts (id INTEGER PRIMARY KEY, email TEXT, "
	    "state TEXT, zip_code TEXT, effective_date TEXT)");
	ASSERT_EQ(run_mode(SCHED_RUN, NULL, &rep, err, sizeof(err)), 1);
	ASSERT_STREQ(err, "table contacts has no column birth_date");
	fresh_db("nostatus", "CREATE TABLE email_schedules (contact_id, email_type, scheduled_send_date)");
	ASSERT_EQ(run_mode(SCHED_RUN, NULL, &rep, err, sizeof(err)), 1);
	ASSERT_STREQ(err, "table email_schedules has no column status");
	/* not a database */
	snprintf(dbpath, sizeof(dbpath), "%s/junk.db", tmpdir);
	FILE *f = fopen(dbpath, "w");
	fputs("this is not a database, just text that is long enough to have a header..........\n", f);
	for (int i = 0; i < 100; i++)
		fputs("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", f);
	fclose(f);
	ASSERT_EQ(run_mode(SCHED_RUN, NULL, &rep, err, sizeof(err)), 1);
	ASSERT_CONTAINS(err, "file is not a database");
	ASSERT_EQ(run_mode(SCHED_DRY, stdout, &rep, err, sizeof(err)), 1);

	/* an old table: missing optional columns are added, duplicates fail the unique index */
	fresh_db("old",
		 "INSERT INTO contacts (id, email, state, birth_date) VALUES (1, 'a@b.co', 'TX', '1950-12-15');"
		 "CREATE TABLE email_schedules (id INTEGER PRIMARY KEY, contact_id INTEGER, "
		 "email_type TEXT, scheduled_send_date TEXT, status TEXT, batch_id TEXT);"
		 "INSERT INTO email_schedules (contact_id, email_type, scheduled_send_date, status, batch_id) VALUES "
		 "(1, 'birthday', '2024-12-01', 'pre-scheduled', 'b1'),"    /* owned, same key */
		 "(1, 'aep', '2024-09-15', 'pre-scheduled', 'b1'),"         /* owned, stale */
		 "(1, 'campaign', '2024-12-01', 'pre-scheduled', 'c1'),"    /* not owned */
		 "(1, 'aep', '2023-09-15', 'sent', 'b0'),"                  /* counted */
		 "(7, 'birthday', '2024-12-01', 'skipped', 'b1');");        /* owned, gone contact */
	if (run(&rep))
		return;
	ASSERT_EQ(rep.deleted, 2);
	ASSERT_EQ(rep.updated, 1);       /* priority/event were NULL */
	ASSERT_EQ(rep.inserted, 1);
	expect_rows("1 aep 2025-09-15 " PRE "30 2025-09-15" T
		    "1 birthday 2024-12-01 " PRE "10 2024-12-15" T
		    "1 campaign 2024-12-01 " PRE "10 0000-00-00 08:30:00\n");
	sqlite3 *db;
	sqlite3_stmt *st;
	sqlite3_open(dbpath, &db);
	sqlite3_prepare_v2(db, "SELECT group_concat(id || ':' || batch_id, ',') FROM "
			   "(SELECT * FROM email_schedules ORDER BY id)", -1, &st, NULL);
	ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
	/* the birthday row kept its id (updated in place), the others are untouched */
	ASSERT_STREQ((const char *)sqlite3_column_text(st, 0), "1:b1,3:c1,4:b0");
	sqlite3_finalize(st);
	sqlite3_close(db);

	fresh_db("dups",
		 "CREATE TABLE email_schedules (contact_id, email_type, scheduled_send_date, status);"
		 "INSERT INTO email_schedules VALUES (1, 'x', '2024-01-01', 'sent'), (1, 'x', '2024-01-01', 'sent');");
	ASSERT_EQ(run_mode(SCHED_RUN, NULL, &rep, err, sizeof(err)), 1);
	ASSERT_CONTAINS(err, "cannot create unique index on table email_schedules");
}

/* ---- fingerprint sidecar (sched_fp.c) ---- */

static int fp_write(const char *path, const unsigned char *b, size_t n)
{
	FILE *f = fopen(path, "wb");

	if (!f)
		return -1;
	size_t w = fwrite(b, 1, n, f);
	return fclose(f) == 0 && w == n ? 0 : -1;
}

static void test_fingerprint(void)
{
	struct sched_opts o, o2;
	struct sched_fp fp, got;
	unsigned char key[SCHED_FP_LEN], key2[SCHED_FP_LEN], buf[4096];
	char path[300], err[256], warn[] = "2 contacts id=7 email 'x' is not a valid email\n2 b\n";
	size_t n;

	sched_opts_default(&o);
	ASSERT_EQ(sched_fp_key(&o, key), 0);
	ASSERT_EQ(sched_fp_key(&o, key2), 0);
	ASSERT_TRUE(!memcmp(key, key2, SCHED_FP_LEN));
	/* every input moves the key; run_id and threads do not */
	o2 = o;
	o2.today++;
	ASSERT_EQ(sched_fp_key(&o2, key2), 0);
	ASSERT_TRUE(memcmp(key, key2, SCHED_FP_LEN));
	o2 = o;
	o2.send_time[7] = '1';
	ASSERT_EQ(sched_fp_key(&o2, key2), 0);
	ASSERT_TRUE(memcmp(key, key2, SCHED_FP_LEN));
	o2 = o;
	o2.rules.st[5].ed.after++;
	ASSERT_EQ(sched_fp_key(&o2, key2), 0);
	ASSERT_TRUE(memcmp(key, key2, SCHED_FP_LEN));
	o2 = o;
	o2.zips.state[999] = 3;
	ASSERT_EQ(sched_fp_key(&o2, key2), 0);
	ASSERT_TRUE(memcmp(key, key2, SCHED_FP_LEN));
	o2 = o;
	o2.strict = true;
	ASSERT_EQ(sched_fp_key(&o2, key2), 0);
	ASSERT_TRUE(memcmp(key, key2, SCHED_FP_LEN));
	o2 = o;
	o2.run_id = "other";
	o2.threads = 1;
	ASSERT_EQ(sched_fp_key(&o2, key2), 0);
	ASSERT_TRUE(!memcmp(key, key2, SCHED_FP_LEN));

	/* round trip */
	memset(&fp, 0, sizeof(fp));
	memcpy(fp.key, key, SCHED_FP_LEN);
	for (int i = 0; i < SCHED_FP_LEN; i++)
		fp.file[i] = (unsigned char)(i * 7);
	for (int i = 0; i < SCHED_FP_KEYLEN; i++)
		fp.fkey[i] = (unsigned char)(200 - i);
	fp.size = 123456789012ULL;
	fp.rep.contacts = 1000;
	fp.rep.valid = 990;
	fp.rep.bad = 4;
	fp.rep.rows = 2999;
	fp.rep.ed_limit = 50;
	fp.rep.inserted = 77;           /* not kept: a rerun inserts nothing */
	fp.warn = warn;
	fp.nwarn = strlen(warn);
	snprintf(path, sizeof(path), "%s/fp.db.ferry-sched", tmpdir);
	ASSERT_EQ(sched_fp_save(path, &fp, err, sizeof(err)), 0);
	ASSERT_EQ(sched_fp_load(path, key, &got), 0);
	ASSERT_TRUE(!memcmp(got.file, fp.file, SCHED_FP_LEN));
	ASSERT_TRUE(!memcmp(got.fkey, fp.fkey, SCHED_FP_KEYLEN));
	ASSERT_EQ(got.size, fp.size);
	ASSERT_EQ(got.rep.contacts, 1000);
	ASSERT_EQ(got.rep.valid, 990);
	ASSERT_EQ(got.rep.bad, 4);
	ASSERT_EQ(got.rep.rows, 2999);
	ASSERT_EQ(got.rep.ed_limit, 50);
	ASSERT_EQ(got.rep.inserted, 0);
	ASSERT_EQ(got.nwarn, strlen(warn));
	ASSERT_STREQ(got.warn, warn);
	free(got.warn);
	/* another key, a missing file */
	o2 = o;
	o2.today++;
	ASSERT_EQ(sched_fp_key(&o2, key2), 0);
	ASSERT_EQ(sched_fp_load(path, key2, &got), -1);
	ASSERT_TRUE(got.warn == NULL);
	ASSERT_EQ(sched_fp_load("/nonexistent/x.ferry-sched", key, &got), -1);
	/* every torn length and every flipped byte is refused */
	FILE *f = fopen(path, "rb");
	n = f ? fread(buf, 1, sizeof(buf), f) : 0;
	if (f)
		fclose(f);
	ASSERT_TRUE(n > 200 && n < sizeof(buf));
	char tpath[320];
	snprintf(tpath, sizeof(tpath), "%s/torn.ferry-sched", tmpdir);
	int torn_ok = 0, flip_ok = 0;
	for (size_t len = 0; len < n; len++) {
		if (fp_write(tpath, buf, len) == 0 && sched_fp_load(tpath, key, &got) == 0) {
			torn_ok++;
			free(got.warn);
		}
	}
	for (size_t i = 0; i < n; i++) {
		buf[i] ^= 0x01;
		if (fp_write(tpath, buf, n) == 0 && sched_fp_load(tpath, key, &got) == 0) {
			flip_ok++;
			free(got.warn);
		}
		buf[i] ^= 0x01;
	}
	ASSERT_EQ(torn_ok, 0);
	ASSERT_EQ(flip_ok, 0);
	ASSERT_EQ(fp_write(tpath, buf, n), 0);
	ASSERT_EQ(sched_fp_load(tpath, key, &got), 0);
	free(got.warn);
}

/* GMAC of [off, off + len) of a file in one call, as the reference for sched_fp_file. */
static void gmac_ref(const char *path, uint64_t off, uint64_t len, const unsigned char *key,
		     unsigned char iv_last, unsigned char tag[16])
{
	unsigned char iv[12] = { 'f', 'p', iv_last }, fin[16];
	unsigned char *buf = malloc(len + 1);
	FILE *f = fopen(path, "rb");
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int ol;

	ASSERT_TRUE(buf && f && ctx);
	if (!buf || !f || !ctx)
		goto out;
	ASSERT_EQ(fseek(f, (long)off, SEEK_SET), 0);
	ASSERT_EQ(fread(buf, 1, len, f), len);
	ASSERT_EQ(EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, key, iv), 1);
	ASSERT_EQ(EVP_EncryptUpdate(ctx, NULL, &ol, buf, (int)len), 1);
	ASSERT_EQ(EVP_EncryptFinal_ex(ctx, fin, &ol), 1);
	ASSERT_EQ(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag), 1);
out:
	EVP_CIPHER_CTX_free(ctx);
	if (f)
		fclose(f);
	free(buf);
}

static void test_fingerprint_file(void)
{
	char path[300];
	sqlite3 *db = NULL;
	sqlite3_file *f = NULL;
	unsigned char k1[SCHED_FP_KEYLEN], k2[SCHED_FP_KEYLEN], a[SCHED_FP_LEN], b[SCHED_FP_LEN],
		c[SCHED_FP_LEN], ref[16];
	uint64_t sz = 0, sz2 = 0;

	snprintf(path, sizeof(path), "%s/fpfile.db", tmpdir);
	ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
	ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
			       "SELECT i + 1 FROM n WHERE i < 3000) INSERT INTO t SELECT "
			       "randomblob(1000) FROM n", NULL, NULL, NULL), SQLITE_OK);
	ASSERT_EQ(sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f), SQLITE_OK);
	ASSERT_EQ(sched_fp_newkey(k1), 0);
	ASSERT_EQ(sched_fp_newkey(k2), 0);
	ASSERT_TRUE(memcmp(k1, k2, SCHED_FP_KEYLEN));
	ASSERT_EQ(sched_fp_file(f, 2, k1, a, &sz), 0);
	ASSERT_EQ(sched_fp_file(f, 1, k1, b, &sz2), 0);
	ASSERT_TRUE(sz > (2u << 20));                   /* two halves, several chunks */
	ASSERT_EQ(sz, sz2);
	ASSERT_TRUE(!memcmp(a, b, SCHED_FP_LEN));       /* threads do not change the value */
	/* chunked streaming equals one call over each half (halves split at 1 MiB units) */
	uint64_t half = (sz / 2) & ~(uint64_t)((1u << 20) - 1);
	gmac_ref(path, 0, half, k1, 0, ref);
	ASSERT_TRUE(!memcmp(a, ref, 16));
	gmac_ref(path, half, sz - half, k1, 1, ref);
	ASSERT_TRUE(!memcmp(a + 16, ref, 16));
	ASSERT_EQ(sched_fp_file(f, 2, k2, c, &sz2), 0);
	ASSERT_TRUE(memcmp(a, c, SCHED_FP_LEN));        /* another key */
	/* one changed row anywhere changes the value */
	ASSERT_EQ(sqlite3_exec(db, "UPDATE t SET x = zeroblob(1000) WHERE rowid = 1",
			       NULL, NULL, NULL), SQLITE_OK);
	ASSERT_EQ(sched_fp_file(f, 2, k1, c, &sz2), 0);
	ASSERT_TRUE(memcmp(a, c, 16));
	ASSERT_EQ(sqlite3_exec(db, "UPDATE t SET x = zeroblob(1000) WHERE rowid = 3000",
			       NULL, NULL, NULL), SQLITE_OK);
	ASSERT_EQ(sched_fp_file(f, 2, k1, b, &sz2), 0);
	ASSERT_TRUE(memcmp(b + 16, c + 16, 16));
	sqlite3_close(db);
}

int main(int argc, char **argv)
{
	(void)argc;
	/* data files are found relative to the source tree */
	char *src = realpath(argv[0], NULL);
	if (src) {
		char *p = strstr(src, "/build/");
		if (p) {
			*p = '\0';
			if (chdir(src) != 0)
				UNIT_FAIL("cannot chdir to %s", src);
		}
		free(src);
	}
	if (!mkdtemp(tmpdir)) {
		UNIT_FAIL("mkdtemp");
		return UNIT_DONE();
	}
	test_dates();
	test_fnv();
	test_data_files();
	test_email_state();
	test_windows();
	test_worked_example();
	test_guard_pastdue();
	test_frequency();
	test_smoothing();
	test_daily_cap();
	test_bad_rows();
	test_states();
	test_underwriting();
	test_schema_and_ownership();
	test_moves();
	test_rows_sidecar();
	test_old_row_order();
	test_journal_vfs();
	test_fingerprint();
	test_fingerprint_file();
	if (!getenv("KEEP_TMP")) {
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			UNIT_FAIL("cannot remove %s", tmpdir);
	}
	return UNIT_DONE();
}
