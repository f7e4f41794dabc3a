/* test_log.c: unit tests of log.c: logfmt quoting, JSON lines (numbers, escapes), masking. */
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ferry_log.h"
#include "unit.h"

static char got[16384];

/* Runs one ferry_logf with stderr sent to a file; the line it wrote lands in got. */
__attribute__((format(printf, 3, 4)))
static void logline(enum ferry_log_format fmt, const char *msg, const char *kvfmt, ...)
{
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);
	va_list ap;
	size_t n;

	ferry_log_setup(FERRY_DEBUG, fmt);
	fflush(stderr);
	dup2(fileno(f), STDERR_FILENO);
	va_start(ap, kvfmt);
	ferry_vlogf(FERRY_INFO, "w", msg, kvfmt, ap);
	va_end(ap);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(f);
	n = fread(got, 1, sizeof(got) - 1, f);
	got[n] = '\0';
	fclose(f);
}

/* The part of a plain line after "ts level who " */
static const char *plain_tail(void)
{
	const char *p = got;

	for (int i = 0; i < 3 && p; i++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	return p ? p : "";
}

static void test_plain_quoting(void)
{
	logline(FERRY_LOG_PLAIN, "m", "a=%s b='%s' n=%d e='%s' q=%s", "x y", "it's \"q\"", 5, "",
		"back\\slash");
	ASSERT_STREQ(plain_tail(), "m a=\"x y\" b=\"it's \\\"q\\\"\" n=5 e=\"\" q=\"back\\\\slash\"\n");
	/* a value holding " k=v" stays one value, and so does a quote of the template's kind */
	logline(FERRY_LOG_PLAIN, "m", "path='%s' reason='%s' x=1", "a k=v", "can't");
	ASSERT_STREQ(plain_tail(), "m path=\"a k=v\" reason=can't x=1\n");
	/* plain values stay bare; template quotes are dropped when nothing needs them */
	logline(FERRY_LOG_PLAIN, "m", "key='%s' etag=%s", "org-data/7.db", "\"abc\"");
	ASSERT_STREQ(plain_tail(), "m key=org-data/7.db etag=\"\\\"abc\\\"\"\n");
	/* a new line in a message or value never starts a second line */
	logline(FERRY_LOG_PLAIN, "two\nlines", "v=%s", "a\nb");
	ASSERT_STREQ(plain_tail(), "two\\nlines v=\"a\\nb\"\n");
	/* suffix after the quotes, a bare word, a key from an argument */
	logline(FERRY_LOG_PLAIN, "m", "sidecar='%s'.x flag %s=%s", "/d b", "k", "v");
	ASSERT_STREQ(plain_tail(), "m sidecar=\"/d b.x\" flag k=v\n");
}

static void test_conversions(void)
{
	uint64_t big = UINT64_MAX;
	const char *volatile none = NULL;   /* volatile: gcc refuses a literal NULL for %s */

	logline(FERRY_LOG_PLAIN, "m",
		"a=%zu b=%lld c=%" PRIu64 " d=%04o e=%.*s f=%5.1f g=%c h=%% i=%x j=%s k=%-3d|",
		(size_t)7, -8LL, big, 0600, 3, "abcdef", 2.25, 'z', 255, none, 4);
	ASSERT_STREQ(plain_tail(), "m a=7 b=-8 c=18446744073709551615 d=0600 e=abc "
		     "f=\"  2.2\" g=z h=% i=ff j=(null) k=\"4  |\"\n");
	logline(FERRY_LOG_PLAIN, "m", "a=%hhd b=%hu c=%jd d=%td e=%*d f=%-*.*s| g=%zd h=%lx",
		(signed char)-5, (unsigned short)65535, (intmax_t)-9, (ptrdiff_t)-2, 4, 7, 5, 2,
		"xyz", (ssize_t)-1, 0xabcUL);
	ASSERT_STREQ(plain_tail(), "m a=-5 b=65535 c=-9 d=-2 e=\"   7\" f=\"xy   |\" g=-1 h=abc\n");
}

static json_t *json_line(void)
{
	json_error_t e;
	json_t *o = json_loads(got, 0, &e);

	if (!o)
		UNIT_FAIL("not JSON (%s): %s", e.text, got);
	return o;
}

static void test_json(void)
{
	json_t *o;

	logline(FERRY_LOG_JSON, "run \"ok\"",
		"ms=%d neg=%d f=%s zero=%s lead=%s q='%s' msg=%s big=%s flag sp=%s",
		12, -3, "1.5", "0", "007", "42", "s3 said no", "123456789012345678901234", "a b");
	o = json_line();
	if (o) {
		ASSERT_STREQ(json_string_value(json_object_get(o, "msg")), "run \"ok\"");
		ASSERT_STREQ(json_string_value(json_object_get(o, "stage")), "w");
		ASSERT_STREQ(json_string_value(json_object_get(o, "level")), "info");
		ASSERT_TRUE(json_is_integer(json_object_get(o, "ms")));
		ASSERT_EQ(json_integer_value(json_object_get(o, "ms")), 12);
		ASSERT_EQ(json_integer_value(json_object_get(o, "neg")), -3);
		ASSERT_TRUE(json_is_real(json_object_get(o, "f")));
		ASSERT_TRUE(json_is_integer(json_object_get(o, "zero")));
		/* not plain decimal numbers, or quoted as text at the call site: strings */
		ASSERT_STREQ(json_string_value(json_object_get(o, "lead")), "007");
		ASSERT_STREQ(json_string_value(json_object_get(o, "q")), "42");
		/* a pair named like a field of every line does not replace it */
		ASSERT_STREQ(json_string_value(json_object_get(o, "kv_msg")), "s3 said no");
		ASSERT_TRUE(json_is_true(json_object_get(o, "flag")));
		/* past int64 many readers (jansson, Go) refuse the number: text */
		ASSERT_STREQ(json_string_value(json_object_get(o, "big")), "123456789012345678901234");
		ASSERT_STREQ(json_string_value(json_object_get(o, "sp")), "a b");
		json_decref(o);
	}
	logline(FERRY_LOG_JSON, "m", "ctl=%s", "a\x01\tb");
	o = json_line();
	if (o) {
		ASSERT_STREQ(json_string_value(json_object_get(o, "ctl")), "a\x01\tb");
		json_decref(o);
	}
	logline(FERRY_LOG_JSON, "no pairs", NULL);
	o = json_line();
	json_decref(o);
}

static void test_long(void)
{
	static char big[6000];
	json_t *o;

	memset(big, '"', sizeof(big) - 1);
	logline(FERRY_LOG_JSON, "m", "a=%s b=%s c=1", big, big);
	o = json_line();
	if (o) {
		ASSERT_TRUE(json_is_true(json_object_get(o, "truncated")));
		json_decref(o);
	}
	ASSERT_EQ(strchr(got, '\n') - got, (long long)strlen(got) - 1);
	logline(FERRY_LOG_PLAIN, big, "a=%s", big);
	ASSERT_EQ(strchr(got, '\n') - got, (long long)strlen(got) - 1);
	ASSERT_CONTAINS(got, " truncated\n");
}

static void test_mask(void)
{
	ferry_log_add_secret("s3cr\"et/x");
	logline(FERRY_LOG_PLAIN, "m", "k='%s'", "pre s3cr\"et/x post");
	ASSERT_STREQ(plain_tail(), "m k=\"pre *** post\"\n");
	logline(FERRY_LOG_JSON, "has s3cr\"et/x", "k=%s", "s3cr\"et/x");
	ASSERT_TRUE(strstr(got, "s3cr") == NULL);
}

static void test_progress_ms(void)
{
	unsetenv("FERRY_PROGRESS_INTERVAL_MS");
	ASSERT_EQ(ferry_log_progress_ms(), 10000);
	setenv("FERRY_PROGRESS_INTERVAL_MS", "250", 1);
	ASSERT_EQ(ferry_log_progress_ms(), 250);
	setenv("FERRY_PROGRESS_INTERVAL_MS", "0", 1);
	ASSERT_EQ(ferry_log_progress_ms(), 0);
	setenv("FERRY_PROGRESS_INTERVAL_MS", "10s", 1);
	ASSERT_EQ(ferry_log_progress_ms(), 10000);
	unsetenv("FERRY_PROGRESS_INTERVAL_MS");
}

int main(void)
{
	test_plain_quoting();
	test_conversions();
	test_json();
	test_long();
	test_mask();
	test_progress_ms();
	return UNIT_DONE();
}
