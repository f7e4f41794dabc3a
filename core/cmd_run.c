/* cmd_run.c: `ferry run [--dry-run] [--from STAGE] [STAGE...] [-o ...]`, and --KEY VALUE
 * after a single STAGE: the pipeline, or the named stages with facts from the journal. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline.h"

/* --KEY VALUE or --KEY=VALUE after a single stage name: -o STAGE.KEY=VALUE */
static int stage_option(struct cli *cli, const char *stage, int *i)
{
	const char *a = cli->argv[*i];
	const char *eq = strchr(a, '='), *val;
	size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
	char key[128], *ov, *p;

	if (kl == 0 || kl >= sizeof(key))
		return cli_usage_error("bad option '%s'", a);
	memcpy(key, a + 2, kl);
	key[kl] = '\0';
	for (p = key; *p; p++)
		if (*p == '-')
			*p = '_';
	if (eq)
		val = eq + 1;
	else if (*i + 1 < cli->argc)
		val = cli->argv[++*i];
	else
		return cli_usage_error("option '%s' needs a value", a);
	if (asprintf(&ov, "%s.%s=%s", stage, key, val) < 0)
		abort();
	cli_add_override(cli, ov);
	free(ov);
	return 0;
}

int cmd_run(struct cli *cli)
{
	struct pipeline_opts o = { 0 };
	struct config *cfg;
	struct run r;
	char **names = calloc((size_t)cli->argc + 1, sizeof(char *));
	int i, rc;

	if (!names)
		abort();
	o.only = names;
	for (i = 0; i < cli->argc; i++) {
		const char *a = cli->argv[i];

		if (strcmp(a, "--dry-run") == 0) {
			o.dry_run = true;
		} else if (strcmp(a, "--from") == 0 && i + 1 < cli->argc) {
			o.from = cli->argv[++i];
		} else if (strncmp(a, "--from=", 7) == 0) {
			o.from = a + 7;
		} else if (strcmp(a, "-o") == 0 && i + 1 < cli->argc) {
			cli_add_override(cli, cli->argv[++i]);
		} else if (strncmp(a, "--", 2) == 0 && a[2] && o.n_only == 1) {
			rc = stage_option(cli, names[0], &i);
			if (rc)
				goto out_names;
		} else if (a[0] == '-') {
			rc = cli_usage_error("unknown option '%s' for run%s", a,
					     o.n_only == 1 ? "" : " (--KEY VALUE works after a "
					     "single stage name)");
			goto out_names;
		} else {
			names[o.n_only++] = cli->argv[i];
		}
	}
	cfg = cli_config(cli);
	if (!cfg) {
		rc = FERRY_USAGE;
		goto out_names;
	}
	rc = pipeline_prepare(&r, cfg, cli->config_path, &o);
	if (rc == 0) {
		r.signo = cli->signo;
		r.cancel_fd = cli->cancel_fd;
		rc = pipeline_run(&r);
	}
	pipeline_release(&r);
out_names:
	free(names);
	return rc;
}
