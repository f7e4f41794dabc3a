/* cmd_list.c: `ferry list`: the stages in order with their last result from the journal. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg.h"
#include "ferry_log.h"
#include "journal.h"
#include "run.h"

int cmd_list(struct cli *cli)
{
	struct config *cfg = cli_config(cli);
	struct run r;
	char err[1024];
	size_t i;

	if (!cfg)
		return FERRY_USAGE;
	if (cli->argc)
		return cli_usage_error("list takes no arguments");
	/* no plugins are loaded: list must work even when one is missing */
	memset(&r, 0, sizeof(r));
	run_stages_from_config(&r, cfg);
	r.state_dir = strdup(cfg_pipeline(cfg, "state_dir"));
	if (journal_load_run(&r, err, sizeof(err)) == -2)
		ferry_logf(FERRY_WARN, "ferry", err, NULL);
	printf("%-4s %-16s %-10s %-8s %s\n", "#", "stage", "plugin", "enabled", "last result");
	for (i = 0; i < r.n; i++)
		printf("%-4zu %-16s %-10s %-8s %s\n", i + 1, r.st[i].name, r.st[i].plugin,
		       r.st[i].enabled ? "yes" : "no", journal_result_name(r.st[i].result));
	run_release(&r);
	return 0;
}
