/* cmd_check.c: `ferry check`: the config, every enabled stage's plugin, keys and check(),
 * then a probe of the S3 endpoint for the conditional writes the lock needs. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "ferry_s3.h"
#include "pipeline.h"

int cmd_check(struct cli *cli)
{
	struct pipeline_opts o = { .check_all = true };
	struct config *cfg = cli_config(cli);
	struct ferry_s3_features f;
	struct ferry_s3_res res;
	struct ferry_s3 *s3;
	char why[1024];
	struct run r;
	int rc, prc;
	size_t i;

	if (!cfg)
		return FERRY_USAGE;
	rc = pipeline_prepare(&r, cfg, cli->config_path, &o);
	for (i = 0; i < r.n; i++)
		printf("stage %-16s plugin %-10s %s\n", r.st[i].name, r.st[i].plugin,
		       !r.st[i].enabled ? "disabled" : r.st[i].invalid ? "NOT OK (see above)" : "ok");
	if (!cfg_find_section(cfg, "s3")) {
		printf("s3: no [s3] section; endpoint not probed\n");
		goto out_run;
	}
	s3 = run_s3(&r);
	if (!s3) {
		printf("s3: cannot open client: %s\n", r.s3_err);
		rc = FERRY_USAGE;
		goto out_run;
	}
	memset(&res, 0, sizeof(res));
	/* always a fresh probe; a safe result refreshes the lock stage's cache */
	prc = ferry_s3_probe_cached(s3, r.state_dir, 0, &f, &res);
	if (prc != FERRY_S3_OK) {
		printf("s3: probe of bucket '%s' failed: %s\n", ferry_s3_bucket(s3), res.msg);
		if (!rc)
			rc = FERRY_FAIL;
		goto out_run;
	}
	printf("s3: bucket '%s' reachable\n", ferry_s3_bucket(s3));
	ferry_s3_features_print(stdout, "s3: ", s3, &f);
	if (ferry_s3_features_unsafe(s3, &f, why, sizeof(why))) {
		printf("s3: REFUSED: %s\n", why);
		printf("s3: the lock stage refuses to run on this store\n");
		if (!rc)
			rc = FERRY_FAIL;
	} else {
		printf("s3: the store fences every write ferry relies on\n");
	}
out_run:
	pipeline_release(&r);
	return rc;
}
