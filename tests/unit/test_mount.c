/* test_mount.c: the mount stage's plan (source, -o list, paths), its check() and mount probes. */
#include "mount.h"
#include "unit.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "ctx.h"
#include "ferry_ctx.h"
#include "ferry_stage.h"
#include "run.h"

extern const struct ferry_stage ferry_stage_v1;    /* mount.c's descriptor */

static char tmpdir[] = "/tmp/test_mount.XXXXXX";

/* A stage context for [stage m] of an INI: the run and stage it needs live with it. */
struct stage_env {
	struct config *cfg;                 /* the loaded INI */
	struct run run;                     /* state_dir only */
	struct stage_rt st;                 /* [stage m], with mount's key table */
	struct ferry_ctx *c;                /* NULL when the INI did not load */
};

static void env_open(struct stage_env *e, const char *ini)
{
	char path[PATH_MAX], err[512];
	FILE *f;

	memset(e, 0, sizeof(*e));
	snprintf(path, sizeof(path), "%s/p.ini", tmpdir);
	f = fopen(path, "w");
	ASSERT_TRUE(f != NULL);
	if (!f)
		return;
	fputs(ini, f);
	fclose(f);
	ASSERT_EQ(cfg_load(&e->cfg, path, NULL, 0, err, sizeof(err)), 0);
	if (!e->cfg) {
		UNIT_FAIL("%s", err);
		return;
	}
	e->run.cfg = e->cfg;
	e->run.state_dir = tmpdir;
	e->st.name = "m";
	e->st.plugin = "mount";
	e->st.sec = cfg_find_section(e->cfg, "m");
	e->st.desc = &ferry_stage_v1;
	e->c = ctx_new(&e->run, &e->st);
}

static void env_close(struct stage_env *e)
{
	if (e->c)
		ctx_free(e->c);
	for (size_t i = 0; i < e->st.n_facts; i++) {
		free(e->st.facts[i].key);
		free(e->st.facts[i].value);
	}
	free(e->st.facts);
	cfg_free(e->cfg);
}

static void test_default_ferryfs(void)
{
	char exe[PATH_MAX], want[PATH_MAX + 16], *slash, *got;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	ASSERT_TRUE(n > 0);
	if (n <= 0)
		return;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	ASSERT_TRUE(slash != NULL);
	if (!slash)
		return;
	*slash = '\0';
	snprintf(want, sizeof(want), "%s/ferryfs", exe);
	got = mount_default_ferryfs();
	ASSERT_STREQ(got, want);
	free(got);
}

static void test_plan(void)
{
	struct stage_env e;
	struct mount_plan p;
	char want[PATH_MAX * 2], *ferryfs = mount_default_ferryfs();

	unsetenv("BUCKET_NAME");
	/* every [s3] key ferryfs knows goes into -o in its table's order, credentials never */
	env_open(&e, "[pipeline]\nname = t\n"
		     "[s3]\nbucket = bkt\nregion = eu-west-1\nendpoint = http://127.0.0.1:9\n"
		     "path_style = true\nmax_retries = 3\n"
		     "[stage m]\nplugin = mount\nmountpoint = mnt\nprefix = org/7\n"
		     "options = ro,max_read=65536\nwait = 3s\n");
	ASSERT_TRUE(e.c != NULL);
	if (!e.c)
		goto out;
	ASSERT_EQ(mount_plan_make(e.c, &p), FERRY_OK);
	snprintf(want, sizeof(want), "%s/mnt", tmpdir);
	ASSERT_STREQ(p.mountpoint, want);
	ASSERT_STREQ(p.source, "bkt:org/7");
	ASSERT_STREQ(p.ferryfs, ferryfs);
	snprintf(want, sizeof(want), "%s/cache", tmpdir);
	ASSERT_STREQ(p.cache_dir, want);
	snprintf(want, sizeof(want), "cache_dir=%s/cache,endpoint=http://127.0.0.1:9,"
		 "region=eu-west-1,path_style=true,max_retries=3,ro,max_read=65536", tmpdir);
	ASSERT_STREQ(p.opts, want);
	ASSERT_EQ(p.wait_ms, 3000);
	mount_plan_release(&p);
	env_close(&e);

	/* no prefix: the bucket alone; defaults for wait, ferryfs given, cache_dir given */
	env_open(&e, "[s3]\nbucket = b2\n"
		     "[stage m]\nplugin = mount\nmountpoint = /srv/m\nferryfs = /opt/ferryfs\n"
		     "cache_dir = /var/cache/f\n");
	ASSERT_TRUE(e.c != NULL);
	if (!e.c)
		goto out;
	ASSERT_EQ(mount_plan_make(e.c, &p), FERRY_OK);
	ASSERT_STREQ(p.mountpoint, "/srv/m");
	ASSERT_STREQ(p.source, "b2");
	ASSERT_STREQ(p.ferryfs, "/opt/ferryfs");
	ASSERT_STREQ(p.opts, "cache_dir=/var/cache/f");
	ASSERT_EQ(p.wait_ms, 10000);
	mount_plan_release(&p);
	env_close(&e);

	/* the bucket from the environment when [s3] has none, else a usage error */
	env_open(&e, "[stage m]\nplugin = mount\nmountpoint = /srv/m\n");
	ASSERT_TRUE(e.c != NULL);
	if (!e.c)
		goto out;
	ASSERT_EQ(mount_plan_make(e.c, &p), FERRY_USAGE);
	ASSERT_CONTAINS(ctx_error(e.c), "no bucket");
	ctx_clear_error(e.c);
	setenv("BUCKET_NAME", "envbkt", 1);
	ASSERT_EQ(mount_plan_make(e.c, &p), FERRY_OK);
	ASSERT_STREQ(p.source, "envbkt");
	mount_plan_release(&p);
	unsetenv("BUCKET_NAME");
out:
	env_close(&e);
	free(ferryfs);
}

/* check() refuses what would break the ferryfs command line or leak credentials. */
static void check_is(const char *ini, int rc, const char *msg)
{
	struct stage_env e;

	env_open(&e, ini);
	ASSERT_TRUE(e.c != NULL);
	if (e.c) {
		ASSERT_EQ(ferry_stage_v1.check(e.c), rc);
		if (msg)
			ASSERT_CONTAINS(ctx_error(e.c), msg);
		else
			ASSERT_TRUE(ctx_error(e.c) == NULL);
	}
	env_close(&e);
}

static void test_check(void)
{
	check_is("[stage m]\nplugin = mount\nmountpoint = /srv/m\nprefix = a/b\noptions = ro\n",
		 FERRY_OK, NULL);
	check_is("[stage m]\nplugin = mount\nmountpoint = /srv/my m\n", FERRY_USAGE,
		 "key 'mountpoint': must not contain blanks or backslashes");
	check_is("[stage m]\nplugin = mount\nmountpoint = /srv/m\nprefix = /abs\n", FERRY_USAGE,
		 "key 'prefix': must not start with '/'");
	check_is("[stage m]\nplugin = mount\nmountpoint = /srv/m\noptions = secret_key=x\n",
		 FERRY_USAGE, "credentials come from the environment");
	check_is("[s3]\nregion = a,b\n[stage m]\nplugin = mount\nmountpoint = /srv/m\n",
		 FERRY_USAGE, "[s3] region must not contain ','");
}

/* Every entry of /proc/self/mounts: fuse types are FUSE mounts, the others are not. */
static void test_probes(void)
{
	char line[PATH_MAX * 2 + 256], dev[256], dir[PATH_MAX], type[128], sub[PATH_MAX + 8];
	int entries = 0;
	FILE *f = fopen("/proc/self/mounts", "re");

	ASSERT_TRUE(f != NULL);
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%255s %4095s %127s", dev, dir, type) != 3 || strchr(dir, '\\'))
			continue;
		entries++;
		if (strncmp(type, "fuse", 4) == 0)
			ASSERT_TRUE(mount_is_fuse_mounted(dir));
	}
	if (f)
		fclose(f);
	ASSERT_TRUE(entries > 0);
	ASSERT_TRUE(!mount_is_fuse_mounted("/proc"));
	ASSERT_TRUE(!mount_is_fuse_mounted(tmpdir));
	/* live: another device than the parent directory */
	ASSERT_TRUE(mount_is_live("/proc"));
	ASSERT_TRUE(!mount_is_live(tmpdir));
	ASSERT_TRUE(!mount_is_live("/nonexistent/x"));
	ASSERT_TRUE(!mount_is_live("relative"));
	/* stale only on ENOTCONN, not on a missing directory */
	snprintf(sub, sizeof(sub), "%s/d", tmpdir);
	ASSERT_EQ(mkdir(sub, 0700), 0);
	ASSERT_TRUE(!mount_is_stale(sub));
	ASSERT_TRUE(!mount_is_stale("/nonexistent/x"));
	rmdir(sub);
}

int main(void)
{
	char path[PATH_MAX];

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_default_ferryfs();
	test_plan();
	test_check();
	test_probes();
	snprintf(path, sizeof(path), "%s/p.ini", tmpdir);
	unlink(path);
	rmdir(tmpdir);
	return UNIT_DONE();
}
