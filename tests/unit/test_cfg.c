/* test_cfg.c: the pipeline INI parser: values, expansion, overrides, located errors. */
#include <stdlib.h>
#include <unistd.h>

#include "cfg.h"
#include "ferry_parse.h"
#include "unit.h"

static char path[64];

static int load(const char *text, char *const *ov, int n_ov, struct config **cfg, char *err,
		size_t errlen)
{
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
	err[0] = '\0';
	return cfg_load(cfg, path, ov, n_ov, err, errlen);
}

static void test_values(void)
{
	uint64_t u;
	int64_t i;
	bool b;

	ASSERT_EQ(ferry_parse_duration_ms("250ms", &u), 0);
	ASSERT_EQ(u, 250);
	ASSERT_EQ(ferry_parse_duration_ms("30s", &u), 0);
	ASSERT_EQ(u, 30000);
	ASSERT_EQ(ferry_parse_duration_ms("5m", &u), 0);
	ASSERT_EQ(u, 300000);
	ASSERT_EQ(ferry_parse_duration_ms("1h30m", &u), 0);
	ASSERT_EQ(u, 5400000);
	ASSERT_EQ(ferry_parse_duration_ms("2d", &u), 0);
	ASSERT_EQ(u, 172800000);
	ASSERT_EQ(ferry_parse_duration_ms("45", &u), 0);
	ASSERT_EQ(u, 45000);
	ASSERT_EQ(ferry_parse_duration_ms("", &u), -1);
	ASSERT_EQ(ferry_parse_duration_ms("5x", &u), -1);
	ASSERT_EQ(ferry_parse_duration_ms("m", &u), -1);
	ASSERT_EQ(ferry_parse_duration_ms("-5s", &u), -1);
	ASSERT_EQ(ferry_parse_duration_ms("1h5", &u), -1);
	ASSERT_EQ(ferry_parse_duration_ms("99999999999999999999s", &u), -1);
	ASSERT_EQ(ferry_parse_size("8MiB", &u), 0);
	ASSERT_EQ(u, 8 << 20);
	ASSERT_EQ(ferry_parse_size("4096", &u), 0);
	ASSERT_EQ(u, 4096);
	ASSERT_EQ(ferry_parse_size("1GiB", &u), 0);
	ASSERT_EQ(u, 1ULL << 30);
	ASSERT_EQ(ferry_parse_size("1MB", &u), 0);
	ASSERT_EQ(u, 1000000);
	ASSERT_EQ(ferry_parse_size("8 MiB", &u), -1);
	ASSERT_EQ(ferry_parse_size("MiB", &u), -1);
	ASSERT_EQ(ferry_parse_size("1PiB", &u), -1);
	/* one parser for the INI and ferryfs -o: any case, decimal units, fractions */
	ASSERT_EQ(ferry_parse_size("1GB", &u), 0);
	ASSERT_EQ(u, 1000000000);
	ASSERT_EQ(ferry_parse_size("1.5g", &u), 0);
	ASSERT_EQ(u, 3ULL << 29);
	ASSERT_EQ(ferry_parse_size("8m", &u), 0);
	ASSERT_EQ(u, 8 << 20);
	ASSERT_EQ(ferry_parse_size("64kib", &u), 0);
	ASSERT_EQ(u, 64 << 10);
	ASSERT_EQ(ferry_parse_size("0.5KiB", &u), 0);
	ASSERT_EQ(u, 512);
	ASSERT_EQ(ferry_parse_size("1.7", &u), 0);       /* whole bytes, rounded down */
	ASSERT_EQ(u, 1);
	ASSERT_EQ(ferry_parse_size("1.", &u), -1);
	ASSERT_EQ(ferry_parse_size(".5M", &u), -1);
	ASSERT_EQ(ferry_parse_size("-1M", &u), -1);
	ASSERT_EQ(ferry_parse_size("16777215.5T", &u), 0);  /* 2^64 - 2^39 */
	ASSERT_EQ(u, (16777215ULL << 40) + (1ULL << 39));
	ASSERT_EQ(ferry_parse_size("16777216T", &u), -1);    /* 2^64: too big */
	ASSERT_EQ(ferry_parse_bool("yes", &b), 0);
	ASSERT_TRUE(b);
	ASSERT_EQ(ferry_parse_bool("Off", &b), 0);
	ASSERT_TRUE(!b);
	ASSERT_EQ(ferry_parse_bool("maybe", &b), -1);
	ASSERT_EQ(ferry_parse_int("-12", &i), 0);
	ASSERT_EQ(i, -12);
	ASSERT_EQ(ferry_parse_int("12a", &i), -1);
	ASSERT_EQ(ferry_parse_int("", &i), -1);
}

static void test_expand(void)
{
	struct config *cfg;
	char err[1024];
	char *ov[] = { (char *)"a.cmd=over ${ORG}", (char *)"pipeline.name=n2" };

	setenv("ORG", "42", 1);
	unsetenv("FERRY_UNSET_VAR");
	setenv("FERRY_EMPTY_VAR", "", 1);
	ASSERT_EQ(load("[pipeline]\nname = org-${ORG}\nstate_dir = /tmp/x/${name}\n"
		       "[stage a]\nplugin = exec\ncmd = ${state_dir}/db ; comment\n"
		       "d = ${FERRY_UNSET_VAR:-fallback} ${FERRY_EMPTY_VAR:-e} $${ORG} $5\n"
		       "long = one\n  two\n  three\n", NULL, 0, &cfg, err, sizeof(err)), 0);
	ASSERT_STREQ(err, "");
	ASSERT_STREQ(cfg_get(cfg, "pipeline", "name"), "org-42");
	ASSERT_STREQ(cfg_get(cfg, "a", "cmd"), "/tmp/x/org-42/db");
	ASSERT_STREQ(cfg_get(cfg, "a", "d"), "fallback e ${ORG} $5");
	ASSERT_STREQ(cfg_get(cfg, "a", "long"), "one two three");
	ASSERT_EQ(cfg_find_entry(cfg_find_section(cfg, "a"), "cmd")->line, 6);
	cfg_free(cfg);
	ASSERT_EQ(load("[pipeline]\nname = n1\n[stage a]\nplugin = exec\ncmd = x\n", ov, 2, &cfg,
		       err, sizeof(err)), 0);
	ASSERT_STREQ(cfg_get(cfg, "a", "cmd"), "over 42");
	ASSERT_STREQ(cfg_get(cfg, "pipeline", "name"), "n2");
	cfg_free(cfg);
}

/* Every error names file and line (or the -o) and the key. */
static void test_errors(void)
{
	static const struct { const char *ini; const char *want; } cases[] = {
		{ "[stage a]\nplugin = exec\ncmd = ${NOPE_NOT_SET}\n", ":3: key 'cmd': variable 'NOPE_NOT_SET' is not set" },
		{ "[stage a]\nplugin = exec\ncmd = ${OOPS\n", ":3: key 'cmd': unterminated '${'" },
		{ "[pipeline]\nname = ${state_dir}\nstate_dir = ${name}\n", "cycle" },
		{ "[bogus]\nx = 1\n", ":1: unknown section [bogus]" },
		{ "[stage a]\nplugin = exec\n[stage a]\nplugin = exec\n", ":3: duplicate stage name 'a' (first at line 1)" },
		{ "[stage a]\nplugin = exec\nplugin = exec\n", ":3: key 'plugin': duplicate key" },
		{ "[stage a]\ncommand = x\n", ":1: key 'plugin': missing required key in [stage a]" },
		{ "[stage a]\nplugin = exec\nenabled = perhaps\n", ":3: key 'enabled': bad boolean 'perhaps'" },
		{ "[pipeline]\ndeadline = soon\n", ":2: key 'deadline': bad duration 'soon'" },
		{ "[pipeline]\ncolour = red\n", ":2: key 'colour': unknown key in [pipeline]" },
		{ "[s3]\nsecret_access_key = x\n", ":2: key 'secret_access_key': unknown key in [s3]" },
		{ "x = 1\n", ":1: key 'x' outside any section" },
		{ "[stage a b]\nplugin = exec\n", ":1: bad stage name 'a b'" },
		{ "[stage a]\nplugin = ../evil\n", ":2: key 'plugin': bad plugin name '../evil'" },
		{ "[stage a]\nplugin = exec\nthis line has no equals sign\n", ":3: syntax error" },
		{ "[stage s3]\nplugin = exec\n", ":1: stage name 's3' is reserved" },
	};
	struct config *cfg;
	char err[1024];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ASSERT_EQ(load(cases[i].ini, NULL, 0, &cfg, err, sizeof(err)), FERRY_USAGE);
		ASSERT_CONTAINS(err, path);
		ASSERT_CONTAINS(err, cases[i].want);
	}
	{
		char *ov[] = { (char *)"nostage.key=1" };
		char *bad[] = { (char *)"novalue" };

		ASSERT_EQ(load("[stage a]\nplugin = exec\n", ov, 1, &cfg, err, sizeof(err)), FERRY_USAGE);
		ASSERT_CONTAINS(err, "-o nostage.key: no stage 'nostage'");
		ASSERT_EQ(load("[stage a]\nplugin = exec\n", bad, 1, &cfg, err, sizeof(err)), FERRY_USAGE);
		ASSERT_CONTAINS(err, "-o 'novalue': expected STAGE.KEY=VALUE");
	}
	ASSERT_EQ(cfg_load(&cfg, "/nonexistent/ferry.ini", NULL, 0, err, sizeof(err)),
		  FERRY_USAGE);
	ASSERT_CONTAINS(err, "cannot open '/nonexistent/ferry.ini': No such file or directory");
}

static void test_keys(void)
{
	static const struct ferry_key keys[] = {
		{ "ttl", FERRY_KEY_DURATION, "1h", 0, "t" },
		{ "size", FERRY_KEY_SIZE, NULL, 0, "s" },
		{ "key", FERRY_KEY_STRING, NULL, FERRY_KEY_REQUIRED, "k" },
		{ "verify", FERRY_KEY_ENUM, "quick", 0, "v", "quick|full|none" },
		{ NULL, 0, NULL, 0, NULL },
	};
	struct config *cfg;
	char err[1024];

	ASSERT_EQ(load("[stage l]\nplugin = lock\nkey = k\nttl = 5m\nsize = 8MiB\n", NULL, 0, &cfg,
		       err, sizeof(err)), 0);
	ASSERT_EQ(cfg_check_keys(cfg_find_section(cfg, "l"), keys, err, sizeof(err)), 0);
	cfg_free(cfg);
	ASSERT_EQ(load("[stage l]\nplugin = lock\nkey = k\nttl = 5 minutes\n", NULL, 0, &cfg, err,
		       sizeof(err)), 0);
	ASSERT_EQ(cfg_check_keys(cfg_find_section(cfg, "l"), keys, err, sizeof(err)),
		  FERRY_USAGE);
	ASSERT_CONTAINS(err, ":4: key 'ttl': bad duration '5 minutes'");
	cfg_free(cfg);
	ASSERT_EQ(load("[stage l]\nplugin = lock\nttl = 5m\n", NULL, 0, &cfg, err, sizeof(err)), 0);
	ASSERT_EQ(cfg_check_keys(cfg_find_section(cfg, "l"), keys, err, sizeof(err)),
		  FERRY_USAGE);
	ASSERT_CONTAINS(err, ":1: key 'key': missing required key in [stage l]");
	cfg_free(cfg);
	ASSERT_EQ(load("[stage l]\nplugin = lock\nkey = k\nkye = typo\n", NULL, 0, &cfg, err,
		       sizeof(err)), 0);
	ASSERT_EQ(cfg_check_keys(cfg_find_section(cfg, "l"), keys, err, sizeof(err)),
		  FERRY_USAGE);
	ASSERT_CONTAINS(err, ":4: key 'kye': unknown key in [stage l]");
	cfg_free(cfg);
	/* a choice key: one of its words, checked at load with file:line */
	ASSERT_EQ(load("[stage l]\nplugin = lock\nkey = k\nverify = full\n", NULL, 0, &cfg, err,
		       sizeof(err)), 0);
	ASSERT_EQ(cfg_check_keys(cfg_find_section(cfg, "l"), keys, err, sizeof(err)), 0);
	cfg_free(cfg);
	ASSERT_EQ(load("[stage l]\nplugin = lock\nkey = k\nverify = fulll\n", NULL, 0, &cfg, err,
		       sizeof(err)), 0);
	ASSERT_EQ(cfg_check_keys(cfg_find_section(cfg, "l"), keys, err, sizeof(err)),
		  FERRY_USAGE);
	ASSERT_CONTAINS(err, ":4: key 'verify': 'fulll' is not quick, full or none");
	cfg_free(cfg);
	ASSERT_EQ(load("[stage l]\nplugin = lock\nkey = k\nverify = \n", NULL, 0, &cfg, err,
		       sizeof(err)), 0);
	ASSERT_EQ(cfg_check_keys(cfg_find_section(cfg, "l"), keys, err, sizeof(err)),
		  FERRY_USAGE);
	ASSERT_CONTAINS(err, ":4: key 'verify': '' is not quick, full or none");
	cfg_free(cfg);
}

int main(void)
{
	int fd;

	snprintf(path, sizeof(path), "/tmp/ferry-test-cfg.XXXXXX");
	fd = mkstemp(path);
	close(fd);
	test_values();
	test_expand();
	test_errors();
	test_keys();
	unlink(path);
	return UNIT_DONE();
}
