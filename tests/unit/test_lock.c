/* test_lock.c: lock body parsing/format (ferry and legacy shell bodies), times, decisions. */
#include "unit.h"

#include <jansson.h>
#include <inttypes.h>

#include "ferry_lock.h"
#include "ferry_log.h"
#include "ferry_s3.h"
#include "ferry_time.h"

static void test_time(void)
{
	time_t t;
	char buf[32];

	ASSERT_EQ(ferry_lock_time_parse("2025-01-21T14:30:22Z", &t), 0);
	ASSERT_EQ(t, 1737469822);
	ferry_lock_time_format(t, buf);
	ASSERT_STREQ(buf, "2025-01-21T14:30:22Z");
	ASSERT_EQ(ferry_lock_time_parse("2025-01-21T14:30:22.123456Z", &t), 0);
	ASSERT_EQ(t, 1737469822);
	ASSERT_EQ(ferry_lock_time_parse("2025-01-21T16:30:22+02:00", &t), 0);
	ASSERT_EQ(t, 1737469822);
	ASSERT_EQ(ferry_lock_time_parse("2025-01-21T13:30:22-0100", &t), 0);
	ASSERT_EQ(t, 1737469822);
	ASSERT_EQ(ferry_lock_time_parse("2025-01-21 14:30:22", &t), 0); /* no zone: UTC */
	ASSERT_EQ(t, 1737469822);
	ASSERT_EQ(ferry_lock_time_parse("2025-01-21", &t), -1);
	ASSERT_EQ(ferry_lock_time_parse("2025-13-21T14:30:22Z", &t), -1);
	ASSERT_EQ(ferry_lock_time_parse("2025-01-21T14:30:22Zjunk", &t), -1);
	ASSERT_EQ(ferry_lock_time_parse("yesterday", &t), -1);
	ASSERT_EQ(ferry_lock_time_parse("", &t), -1);
	ASSERT_EQ(ferry_lock_time_parse(NULL, &t), -1);
}

static struct ferry_lock_body sample(void)
{
	struct ferry_lock_body b = { 0 };

	snprintf(b.owner, sizeof(b.owner), "ferry org-42");
	snprintf(b.instance_id, sizeof(b.instance_id), "machine-7");
	b.pid = 4242;
	ASSERT_EQ(ferry_lock_nonce(b.nonce), 0);
	b.generation = 3;
	b.acquired_at = 1737469822;
	b.ttl_s = 3600;
	b.expires_at = b.acquired_at + b.ttl_s;
	return b;
}

static void test_roundtrip(void)
{
	struct ferry_lock_body b = sample(), p;
	char err[200] = "";
	char *s = ferry_lock_format(&b);

	ASSERT_TRUE(s != NULL);
	ASSERT_CONTAINS(s, "\"owner\":\"ferry org-42\"");
	ASSERT_CONTAINS(s, "\"acquired_at\":\"2025-01-21T14:30:22Z\"");
	ASSERT_CONTAINS(s, "\"expires_at\":\"2025-01-21T15:30:22Z\"");
	/* the shell locker's own fields, so it honours ferry's lock */
	ASSERT_CONTAINS(s, "\"timestamp\":\"2025-01-21T14:30:22Z\"");
	ASSERT_CONTAINS(s, "\"timeout\":3600");
	ASSERT_EQ(ferry_lock_parse(s, strlen(s), &p, err, sizeof(err)), 0);
	ASSERT_STREQ(p.owner, b.owner);
	ASSERT_STREQ(p.instance_id, b.instance_id);
	ASSERT_STREQ(p.nonce, b.nonce);
	ASSERT_EQ(p.pid, 4242);
	ASSERT_EQ(p.generation, 3);
	ASSERT_EQ(p.acquired_at, b.acquired_at);
	ASSERT_EQ(p.expires_at, b.expires_at);
	ASSERT_EQ(p.ttl_s, 3600);
	ASSERT_EQ(p.legacy, 0);
	free(s);
}

/* What the shell locker computes from ferry's body: timestamp + timeout. */
static void test_shell_sees_ferry(void)
{
	struct ferry_lock_body b = sample();
	char *s = ferry_lock_format(&b);
	json_t *o = json_loads(s, 0, NULL);
	time_t ts;

	ASSERT_TRUE(o != NULL);
	ASSERT_EQ(ferry_lock_time_parse(json_string_value(json_object_get(o, "timestamp")), &ts), 0);
	ASSERT_EQ(ts + json_integer_value(json_object_get(o, "timeout")), b.expires_at);
	ASSERT_TRUE(json_is_string(json_object_get(o, "instance_id")));
	json_decref(o);
	free(s);
}

static void test_legacy(void)
{
	const char *l = "{\n  \"instance_id\": \"instance_20250121_143022_1234_hostname\",\n"
			"  \"timestamp\": \"2025-01-21T14:30:22Z\", \n  \"timeout\": 3600\n}\n";
	const char *l2 = "{\"instance_id\":\"x\",\"timestamp\":\"2025-01-21T14:30:22Z\",\"timeout\":\"60\"}";
	struct ferry_lock_body p;
	char err[200] = "", d[400];

	ASSERT_EQ(ferry_lock_parse(l, strlen(l), &p, err, sizeof(err)), 0);
	ASSERT_EQ(p.legacy, 1);
	ASSERT_STREQ(p.instance_id, "instance_20250121_143022_1234_hostname");
	ASSERT_EQ(p.acquired_at, 1737469822);
	ASSERT_EQ(p.expires_at, 1737469822 + 3600);
	ASSERT_EQ(p.ttl_s, 3600);
	ASSERT_EQ(ferry_lock_is_expired(&p, 1737469822 + 3600), 0);
	ASSERT_EQ(ferry_lock_is_expired(&p, 1737469822 + 3601), 1);
	ferry_lock_describe(&p, d, sizeof(d));
	ASSERT_CONTAINS(d, "legacy");
	ASSERT_CONTAINS(d, "instance_20250121_143022_1234_hostname");
	ASSERT_CONTAINS(d, "2025-01-21T15:30:22Z");

	ASSERT_EQ(ferry_lock_parse(l2, strlen(l2), &p, err, sizeof(err)), 0);
	ASSERT_EQ(p.expires_at, 1737469822 + 60);
}

/* A body carrying both judgements: the later expiry wins. */
static void test_both_expiries(void)
{
	const char *a = "{\"nonce\":\"ab\",\"expires_at\":\"2025-01-21T14:31:00Z\","
			"\"timestamp\":\"2025-01-21T14:30:22Z\",\"timeout\":3600}";
	const char *b = "{\"nonce\":\"ab\",\"expires_at\":\"2025-01-21T18:00:00Z\","
			"\"timestamp\":\"2025-01-21T14:30:22Z\",\"timeout\":60}";
	const char *c = "{\"nonce\":\"ab\",\"expires_at\":1737469900}";
	struct ferry_lock_body p;
	char err[200];

	ASSERT_EQ(ferry_lock_parse(a, strlen(a), &p, err, sizeof(err)), 0);
	ASSERT_EQ(p.expires_at, 1737469822 + 3600);
	ASSERT_EQ(p.legacy, 0);
	ASSERT_EQ(ferry_lock_parse(b, strlen(b), &p, err, sizeof(err)), 0);
	ASSERT_EQ(p.expires_at, 1737482400);
	ASSERT_EQ(ferry_lock_parse(c, strlen(c), &p, err, sizeof(err)), 0);
	ASSERT_EQ(p.expires_at, 1737469900);
}

static void test_bad(void)
{
	static const struct {
		const char *body, *want;
	} cases[] = {
		{ "", "not JSON" },
		{ "garbage", "not JSON" },
		{ "[1,2]", "not a JSON object" },
		{ "{}", "no expiry" },
		{ "{\"instance_id\":\"x\",\"timestamp\":\"2025-01-21T14:30:22Z\"}", "no expiry" },
		{ "{\"timestamp\":\"soon\",\"timeout\":5}", "'timestamp'" },
		{ "{\"timestamp\":\"2025-01-21T14:30:22Z\",\"timeout\":-5}", "'timeout'" },
		{ "{\"timestamp\":\"2025-01-21T14:30:22Z\",\"timeout\":\"5x\"}", "'timeout'" },
		{ "{\"expires_at\":true}", "'expires_at'" },
		{ "{\"expires_at\":1,\"generation\":-1}", "'generation'" },
		{ "{\"expires_at\":1,\"pid\":\"me\"}", "'pid'" },
		{ "{\"expires_at\":1,\"expires_at\":2}", "not JSON" },
		{ "{\"expires_at\":1,\"nonce\":\"00000000000000000000000000000000000000000000000000"
		  "000000000000000000\"}", "'nonce'" },
	};
	struct ferry_lock_body p;
	char err[200];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		ASSERT_EQ(ferry_lock_parse(cases[i].body, strlen(cases[i].body), &p, err, sizeof(err)),
			  -1);
		ASSERT_CONTAINS(err, cases[i].want);
	}
}

static void test_backoff(void)
{
	ASSERT_EQ(ferry_lock_backoff_ms(0, 250, 2000, 0), 125);
	ASSERT_EQ(ferry_lock_backoff_ms(0, 250, 2000, UINT32_MAX), 250);
	ASSERT_EQ(ferry_lock_backoff_ms(1, 250, 2000, UINT32_MAX), 500);
	ASSERT_EQ(ferry_lock_backoff_ms(3, 250, 2000, UINT32_MAX), 2000);
	ASSERT_EQ(ferry_lock_backoff_ms(60, 250, 2000, UINT32_MAX), 2000);
	ASSERT_EQ(ferry_lock_backoff_ms(60, 250, 2000, 0), 1000);
	for (unsigned int a = 0; a < 40; a++) {
		uint64_t d = ferry_lock_backoff_ms(a, 250, 2000, (uint32_t)(a * 2654435761u));

		ASSERT_TRUE(d >= 125 && d <= 2000);
	}
	ASSERT_TRUE(ferry_lock_backoff_ms(0, 0, 0, 7) <= 1);
}

static void test_lease(void)
{
	/* no Date: ttl from the send, minus margin */
	ASSERT_EQ(ferry_lock_lease_until(1000, 1050, 60000, 5000, 0, 0), 56000);
	/* server agrees with the body: the Date bound is a second stricter */
	ASSERT_EQ(ferry_lock_lease_until(1000, 1050, 60000, 5000, 1060, 1000), 1050 + 59000 - 5000);
	/* body written with a clock 30 s behind the server: the lease shrinks */
	ASSERT_EQ(ferry_lock_lease_until(1000, 1050, 60000, 5000, 1030, 1000), 1050 + 29000 - 5000);
	/* body already expired by server time: lease in the past */
	ASSERT_TRUE(ferry_lock_lease_until(1000, 1050, 60000, 0, 990, 1000) < 1000);
}

static void test_misc(void)
{
	char a[65], b[65], id[40], inst[128], d[400];
	struct ferry_lock_body x = sample();

	ASSERT_EQ(ferry_lock_nonce(a), 0);
	ASSERT_EQ(ferry_lock_nonce(b), 0);
	ASSERT_EQ(strlen(a), 64);
	ASSERT_EQ(strspn(a, "0123456789abcdef"), 64);
	ASSERT_TRUE(strcmp(a, b) != 0);
	ferry_lock_boot_id(id);
	ASSERT_EQ(strlen(id), 36);
	ASSERT_TRUE(ferry_boot_ms() > 0);
	setenv("FLY_MACHINE_ID", "148ed193b95e89", 1);
	ferry_lock_instance_id(inst);
	ASSERT_STREQ(inst, "148ed193b95e89");
	unsetenv("FLY_MACHINE_ID");
	ferry_lock_instance_id(inst);
	ASSERT_TRUE(inst[0] != '\0');
	ferry_lock_describe(&x, d, sizeof(d));
	ASSERT_STREQ(d, "'ferry org-42' (instance 'machine-7', pid 4242, generation 3) until "
			"2025-01-21T15:30:22Z");
}

/* ---- the lease question (ferry_lock_check_lease) over the lock stage's facts ------------ */

struct fake_run {
	struct ferry_s3 *s3;                /* NULL: no client (the local checks need none) */
	char key[256], nonce[80], until[32], boot[40];
	struct ferry_lock_lease l;          /* what push reads from the lock stage's facts */
	char err[1024];
};

static void fake_init(struct fake_run *f, struct ferry_s3 *s3)
{
	memset(f, 0, sizeof(*f));
	f->s3 = s3;
}

/* What the lock stage would have published. */
static void fake_facts(struct fake_run *f, const char *key, const char *nonce, int64_t until,
		       const char *boot)
{
	snprintf(f->key, sizeof(f->key), "%s", key);
	snprintf(f->nonce, sizeof(f->nonce), "%s", nonce);
	snprintf(f->until, sizeof(f->until), "%" PRId64, until);
	snprintf(f->boot, sizeof(f->boot), "%s", boot);
	f->l = (struct ferry_lock_lease){ .key = f->key, .nonce = f->nonce, .until = f->until,
					  .boot_id = f->boot };
}

static void fake_release(struct fake_run *f)
{
	f->s3 = NULL;                       /* the test frees its own client */
}

/* A fresh error for each question. */
static int ask(struct fake_run *f, int64_t need_s, const char **msg)
{
	int rc;

	f->err[0] = '\0';
	rc = ferry_lock_check_lease(f->s3, &f->l, need_s, f->err, sizeof(f->err));
	*msg = f->err;
	return rc;
}

static void test_assert_held_local(void)
{
	struct fake_run f;
	char boot[40];
	const char *msg;
	int64_t now = ferry_boot_ms();

	ferry_lock_boot_id(boot);
	fake_init(&f, NULL);
	ASSERT_EQ(ask(&f, 10, &msg), FERRY_FAIL);
	ASSERT_CONTAINS(msg, "no lock held");

	fake_facts(&f, "k.lock", "abc", now + 3600 * 1000, "another-boot");
	ASSERT_EQ(ask(&f, 10, &msg), FERRY_FENCED);
	ASSERT_CONTAINS(msg, "reboot");

	fake_facts(&f, "k.lock", "abc", now - 5000, boot);
	ASSERT_EQ(ask(&f, 10, &msg), FERRY_FENCED);
	ASSERT_CONTAINS(msg, "lease of lock 'k.lock' ran out");

	fake_facts(&f, "k.lock", "abc", now + 30 * 1000, boot);
	ASSERT_EQ(ask(&f, 60, &msg), FERRY_FAIL);
	ASSERT_CONTAINS(msg, "s needed");
	fake_release(&f);
}

/* Against moto when FERRY_TEST_S3=1 (endpoint and bucket from AWS_* and BUCKET_NAME)
 * (tests/integration/t1111-lock-lib.sh runs this binary that way). */
static void test_s3(void)
{
	struct ferry_s3_conf conf;
	struct ferry_s3 *s3;
	struct ferry_lock_opts o = { .key = "unit/lock", .owner = "unit", .ttl_ms = 60000,
				     .max_wait_ms = 0, .backoff_base_ms = 10, .backoff_cap_ms = 50,
				     .margin_ms = 5000 };
	struct ferry_lock_held h, h2;
	struct ferry_lock_state st;
	struct ferry_lock_body who;
	enum ferry_lock_outcome oc;
	struct ferry_s3_res res;
	struct fake_run f;
	char err[1024], boot[40], *other;
	const char *msg;
	int64_t t0;

	ferry_s3_conf_init(&conf);
	ferry_s3_conf_from_env(&conf);
	s3 = ferry_s3_new(&conf, err, sizeof(err));
	ferry_s3_conf_release(&conf);
	ASSERT_TRUE(s3 != NULL);
	if (!s3)
		return;

	/* uncontended: one request, lease ~ ttl - margin */
	t0 = ferry_boot_ms();
	ASSERT_EQ(ferry_lock_acquire(s3, &o, &h, err, sizeof(err)), FERRY_OK);
	ASSERT_EQ(h.requests, 1);
	ASSERT_EQ(h.body.generation, 1);
	ASSERT_TRUE(h.lease_until_boot_ms <= t0 + 55000 + 1000);
	ASSERT_TRUE(h.lease_until_boot_ms >= t0 + 55000 - 2000);
	ASSERT_EQ(ferry_lock_read(s3, o.key, &st, err, sizeof(err)), 0);
	ASSERT_TRUE(st.exists && st.parsed);
	ASSERT_STREQ(st.body.nonce, h.body.nonce);
	ASSERT_STREQ(st.etag, h.etag);
	ASSERT_TRUE(st.server_now != 0);

	/* held: a second try with max_wait 0 is NOLOCK naming the holder */
	ASSERT_EQ(ferry_lock_acquire(s3, &o, &h2, err, sizeof(err)), FERRY_NOLOCK);
	ASSERT_CONTAINS(err, "held by 'unit'");
	ASSERT_CONTAINS(err, "until ");

	/* the lease question, over the facts the lock stage publishes */
	fake_init(&f, s3);
	ferry_lock_boot_id(boot);
	fake_facts(&f, h.key, h.body.nonce, h.lease_until_boot_ms, boot);
	ASSERT_EQ(ask(&f, 30, &msg), FERRY_OK);

	/* someone else's lock at the key now: fenced, and release leaves it alone */
	who = h.body;
	ferry_lock_nonce(who.nonce);
	snprintf(who.owner, sizeof(who.owner), "intruder");
	other = ferry_lock_format(&who);
	ASSERT_EQ(ferry_s3_put(s3, o.key, other, strlen(other), NULL, &res), FERRY_S3_OK);
	free(other);
	ASSERT_EQ(ask(&f, 30, &msg), FERRY_FENCED);
	ASSERT_CONTAINS(msg, "now held by 'intruder'");
	ASSERT_EQ(ferry_lock_release(s3, o.key, h.body.nonce, &oc, &who, err, sizeof(err)), 0);
	ASSERT_EQ(oc, FERRY_LOCK_NOT_OURS);
	ASSERT_STREQ(who.owner, "intruder");
	ASSERT_EQ(ferry_lock_read(s3, o.key, &st, err, sizeof(err)), 0);
	ASSERT_TRUE(st.exists);

	/* gone: fenced; release says gone */
	ASSERT_EQ(ferry_s3_delete(s3, o.key, NULL, &res), FERRY_S3_OK);
	ASSERT_EQ(ask(&f, 30, &msg), FERRY_FENCED);
	ASSERT_CONTAINS(msg, "is gone");
	ASSERT_EQ(ferry_lock_release(s3, o.key, h.body.nonce, &oc, NULL, err, sizeof(err)), 0);
	ASSERT_EQ(oc, FERRY_LOCK_GONE);

	/* an unreadable object is held until someone breaks it */
	ASSERT_EQ(ferry_s3_put(s3, o.key, "garbage", 7, NULL, &res), FERRY_S3_OK);
	ASSERT_EQ(ferry_lock_acquire(s3, &o, &h2, err, sizeof(err)), FERRY_NOLOCK);
	ASSERT_CONTAINS(err, "unreadable lock (not JSON");
	ASSERT_EQ(ferry_s3_delete(s3, o.key, NULL, &res), FERRY_S3_OK);

	/* ours again: released */
	ASSERT_EQ(ferry_lock_acquire(s3, &o, &h, err, sizeof(err)), FERRY_OK);
	ASSERT_EQ(ferry_lock_release(s3, o.key, h.body.nonce, &oc, NULL, err, sizeof(err)), 0);
	ASSERT_EQ(oc, FERRY_LOCK_RELEASED);
	ASSERT_EQ(ferry_lock_read(s3, o.key, &st, err, sizeof(err)), 0);
	ASSERT_TRUE(!st.exists);

	fake_release(&f);
	ferry_s3_free(s3);
}

int main(void)
{
	test_time();
	test_roundtrip();
	test_shell_sees_ferry();
	test_legacy();
	test_both_expiries();
	test_bad();
	test_backoff();
	test_lease();
	test_misc();
	test_assert_held_local();
	if (getenv("FERRY_TEST_S3"))
		test_s3();
	return UNIT_DONE();
}
