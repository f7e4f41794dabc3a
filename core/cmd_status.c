/* cmd_status.c: `ferry status`: the last run journal, then the lock holder from S3 (what
 * `ferry lock status` shows) when the pipeline has a lock stage. */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cfg.h"
#include "cmd_work.h"
#include "journal.h"
#include "plugin.h"

static void show(const struct journal_view *v)
{
	size_t i, j;

	printf("pipeline  %s\nrun       %s\nconfig    %s\nstarted   %s\nended     %s\n"
	       "result    %s (exit %" PRId64 ")\n\n", v->pipeline, v->run_id, v->config,
	       v->started_at, v->ended_at, v->result, v->exit_code);
	printf("%-16s %-10s %-12s %8s  %s\n", "stage", "plugin", "result", "ms", "facts");
	for (i = 0; i < v->n; i++) {
		const struct journal_stage *st = &v->st[i];

		printf("%-16s %-10s %-12s %8" PRId64 "  ", st->name, st->plugin, st->result,
		       st->ms);
		for (j = 0; j < st->n_facts; j++)
			printf("%s=%s ", st->facts[j].key, st->facts[j].value);
		printf("\n");
		if (st->error)
			printf("%-16s error: %s\n", "", st->error);
	}
}

int cmd_status(struct cli *cli)
{
	struct config *cfg;
	struct journal_view v;
	char path[4200], err[1024];

	if (cli->argc > 0 && strncmp(cli->argv[0], "--org", 5) == 0)
		return cmd_work_status(cli);        /* a fleet org's run records (cmd_work_status.c) */
	cfg = cli_config(cli);
	if (!cfg)
		return FERRY_USAGE;
	journal_path(cfg_pipeline(cfg, "state_dir"), path, sizeof(path));
	if (journal_view_load(&v, path, err, sizeof(err)) < 0)
		printf("no run journal at '%s'\n", path);
	else
		show(&v);
	journal_view_release(&v);
	fflush(stdout);
	if (cli_stage_key(cli, "lock", "key") && plugin_load(plugin_dir(NULL), "lock", err,
							     sizeof(err))) {
		char *argv[] = { (char *)"status", NULL };
		struct cli sub = *cli;
		int rc;

		printf("\nlock\n");
		fflush(stdout);
		sub.argc = 1;
		sub.argv = argv;
		rc = cmd_lock(&sub);
		cli->s3 = sub.s3;                   /* opened for the lock, closed at exit */
		return rc == 0 ? 0 : FERRY_FAIL;
	}
	return 0;
}
