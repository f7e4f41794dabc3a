/* test_work.c: unit tests of `ferry work`'s bucket side (core/cmd_work_rec.c): UTC periods and
 * their names, the org key pattern and ids, record keys and the record's JSON. */
#include <jansson.h>

#include "cmd_work.h"
#include "unit.h"

#define H 3600000LL
#define D (24 * H)

/* 2026-12-03T06:45:12.345Z */
static const int64_t NOW = 1796280312345LL;

static void test_periods(void)
{
	struct work_period p;
	char why[256];

	cmd_work_rec_period(D, NOW, &p);
	ASSERT_STREQ(p.name, "2026-12-03");
	ASSERT_EQ(p.start_ms % D, 0);
	ASSERT_EQ(p.end_ms - p.start_ms, D);
	ASSERT_TRUE(p.start_ms <= NOW && NOW < p.end_ms);
	cmd_work_rec_period(H, NOW, &p);
	ASSERT_STREQ(p.name, "2026-12-03T06");
	cmd_work_rec_period(6 * H, NOW, &p);
	ASSERT_STREQ(p.name, "2026-12-03T06");
	cmd_work_rec_period(30 * 60000, NOW, &p);
	ASSERT_STREQ(p.name, "2026-12-03T0630");
	cmd_work_rec_period(D, NOW - NOW % D - 1, &p);          /* last ms of the day before */
	ASSERT_STREQ(p.name, "2026-12-02");
	ASSERT_EQ(cmd_work_rec_period_check(D, why, sizeof(why)), 0);
	ASSERT_EQ(cmd_work_rec_period_check(2 * D, why, sizeof(why)), 0);
	ASSERT_EQ(cmd_work_rec_period_check(H, why, sizeof(why)), 0);
	ASSERT_EQ(cmd_work_rec_period_check(5 * H, why, sizeof(why)), -1);
	ASSERT_CONTAINS(why, "divide a day");
	ASSERT_EQ(cmd_work_rec_period_check(D + H, why, sizeof(why)), -1);
	ASSERT_EQ(cmd_work_rec_period_check(30000, why, sizeof(why)), -1);
	ASSERT_EQ(cmd_work_rec_period_check(0, why, sizeof(why)), -1);
}

static void test_pattern(void)
{
	struct work_pattern p;
	char id[WORK_ORG_MAX], why[256];

	ASSERT_EQ(cmd_work_rec_pattern("org-data/*.db", &p, why, sizeof(why)), 0);
	ASSERT_STREQ(p.prefix, "org-data/");
	ASSERT_STREQ(p.suffix, ".db");
	ASSERT_TRUE(cmd_work_rec_match(&p, "org-data/42.db", id, sizeof(id)));
	ASSERT_STREQ(id, "42");
	ASSERT_TRUE(!cmd_work_rec_match(&p, "org-data/42.db.lock", id, sizeof(id)));
	ASSERT_TRUE(!cmd_work_rec_match(&p, "org-data/.db", id, sizeof(id)));
	ASSERT_TRUE(!cmd_work_rec_match(&p, "other/42.db", id, sizeof(id)));
	ASSERT_TRUE(cmd_work_rec_match(&p, "org-data/a/b.db", id, sizeof(id)));
	ASSERT_TRUE(!cmd_work_rec_valid_id(id));             /* "a/b": listed, then ignored */
	ASSERT_TRUE(cmd_work_rec_valid_id("Org_7-b"));
	ASSERT_TRUE(!cmd_work_rec_valid_id(""));
	ASSERT_TRUE(!cmd_work_rec_valid_id(".."));
	ASSERT_TRUE(!cmd_work_rec_valid_id("a.b"));
	ASSERT_EQ(cmd_work_rec_pattern("tenants/*/data.db", &p, why, sizeof(why)), 0);
	ASSERT_TRUE(cmd_work_rec_match(&p, "tenants/t1/data.db", id, sizeof(id)));
	ASSERT_STREQ(id, "t1");
	ASSERT_EQ(cmd_work_rec_pattern("org-data/db", &p, why, sizeof(why)), -1);
	ASSERT_CONTAINS(why, "exactly one '*'");
	ASSERT_EQ(cmd_work_rec_pattern("*/*.db", &p, why, sizeof(why)), -1);
	ASSERT_EQ(cmd_work_rec_pattern("/org/*.db", &p, why, sizeof(why)), -1);
}

static void test_record(void)
{
	struct work_stage_rec st[2] = {
		{ .name = "lock", .plugin = "lock", .result = "ok", .ms = 50 },
		{ .name = "pull", .plugin = "pull", .result = "failed", .ms = 1500, .bytes = 4096,
		  .has_bytes = true, .error = "origin gone" },
	};
	struct work_record r = {
		.org = "42", .period = "2026-12-03", .run_id = "20261203T064512Z-9",
		.worker = "m1/9", .host = "m1", .started_ms = NOW, .ended_ms = NOW + 2500,
		.exit_code = 1, .result = "failed", .error = "pull: origin gone", .st = st, .n = 2,
	};
	char key[256], *text;
	json_t *o;

	cmd_work_rec_done_key("ferry-runs/", "42", "2026-12-03", key, sizeof(key));
	ASSERT_STREQ(key, "ferry-runs/42/2026-12-03.json");
	cmd_work_rec_failed_key("ferry-runs/", "42", "2026-12-03", "R1", key, sizeof(key));
	ASSERT_STREQ(key, "ferry-runs/42/2026-12-03.failed-R1.json");
	ASSERT_EQ(cmd_work_rec_bytes(st, 2), 4096);
	text = cmd_work_rec_json(&r);
	o = json_loads(text, 0, NULL);
	ASSERT_TRUE(json_is_object(o));
	ASSERT_STREQ(json_string_value(json_object_get(o, "started_at")), "2026-12-03T06:45:12.345Z");
	ASSERT_STREQ(json_string_value(json_object_get(o, "ended_at")), "2026-12-03T06:45:14.845Z");
	ASSERT_EQ(json_integer_value(json_object_get(o, "exit")), 1);
	ASSERT_EQ(json_integer_value(json_object_get(o, "bytes")), 4096);
	ASSERT_STREQ(json_string_value(json_object_get(o, "error")), "pull: origin gone");
	ASSERT_EQ(json_array_size(json_object_get(o, "stages")), 2);
	ASSERT_TRUE(!json_object_get(json_array_get(json_object_get(o, "stages"), 0), "bytes"));
	ASSERT_STREQ(json_string_value(json_object_get(json_array_get(json_object_get(o, "stages"),
								     1), "error")), "origin gone");
	json_decref(o);
	free(text);
}

int main(void)
{
	test_periods();
	test_pattern();
	test_record();
	return UNIT_DONE();
}
