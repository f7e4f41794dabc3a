/* cmd_run.c: `ferry run [--dry-run] [--exact] [--discard-local] [--from STAGE] [STAGE...]
 * [-o ...]`, and --KEY VALUE after a single STAGE: the pipeline, or the named stages (with
 * the stages they need brought in, unless --exact) and facts from the journal. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "pipeline.h"
#include "run.h"

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

/* --discard-local: discard_local = true for every pull stage (-o NAME.discard_local=true),
 * then the config again with those overrides. */
static struct config *discard_local(struct cli *cli, struct config *cfg)
{
	struct run r = { 0 };
	size_t i;
	int n = 0;

	run_stages_from_config(&r, cfg);
	for (i = 0; i < r.n; i++) {
		char *ov;

		if (strcmp(r.st[i].plugin, "pull") != 0)
			continue;
		if (asprintf(&ov, "%s.discard_local=true", r.st[i].name) < 0)
			abort();
		cli_add_override(cli, ov);
		free(ov);
		n++;
	}
	run_release(&r);
	if (!n) {
		cli_usage_error("--discard-local: no stage of plugin 'pull' in '%s'", cli->config_path);
		return NULL;
	}
	cfg_free(cli->cfg);
	cli->cfg = NULL;
	return cli_config(cli);
}

int cmd_run(struct cli *cli)
{
	struct pipeline_opts o = { 0 };
	struct config *cfg;
	struct run r;
	char **names = calloc((size_t)cli->argc + 1, sizeof(char *));
	bool discard = false;
	int i, rc;

	if (!names)
		abort();
	o.only = names;
	for (i = 0; i < cli->argc; i++) {
		const char *a = cli->argv[i];

		if (strcmp(a, "--dry-run") == 0) {
			o.dry_run = true;
		} else if (strcmp(a, "--exact") == 0) {
			o.exact = true;
		} else if (strcmp(a, "--discard-local") == 0) {
			discard = true;
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
	if (cfg && discard)
		cfg = discard_local(cli, cfg);
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
