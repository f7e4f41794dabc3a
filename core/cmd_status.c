/* cmd_status.c: `ferry status`: the last run journal, then the lock holder from S3 (what
 * `ferry lock status` shows) when the pipeline has a lock stage. */
#include "cli.h"

#include <jansson.h>
#include <stdio.h>

#include "cfg.h"
#include "plugin.h"

int cmd_status(struct cli *cli)
{
	struct config *cfg = cli_config(cli);
	char path[4200];
	json_error_t je;
	json_t *root, *stages, *s, *facts, *v;
	size_t i;
	const char *k;

	if (!cfg)
		return FERRY_USAGE;
	snprintf(path, sizeof(path), "%s/journal.json", cfg_pipeline(cfg, "state_dir"));
	root = json_load_file(path, 0, &je);
	if (!root) {
		printf("no run journal at '%s'\n", path);
	} else {
		printf("pipeline  %s\nrun       %s\nconfig    %s\nstarted   %s\nended     %s\n"
		       "result    %s (exit %" JSON_INTEGER_FORMAT ")\n\n",
		       json_string_value(json_object_get(root, "pipeline")),
		       json_string_value(json_object_get(root, "run_id")),
		       json_string_value(json_object_get(root, "config")),
		       json_string_value(json_object_get(root, "started_at")),
		       json_string_value(json_object_get(root, "ended_at")),
		       json_string_value(json_object_get(root, "result")),
		       json_integer_value(json_object_get(root, "exit")));
		printf("%-16s %-10s %-12s %8s  %s\n", "stage", "plugin", "result", "ms", "facts");
		stages = json_object_get(root, "stages");
		json_array_foreach(stages, i, s) {
			printf("%-16s %-10s %-12s %8" JSON_INTEGER_FORMAT "  ",
			       json_string_value(json_object_get(s, "name")),
			       json_string_value(json_object_get(s, "plugin")),
			       json_string_value(json_object_get(s, "result")),
			       json_integer_value(json_object_get(s, "ms")));
			facts = json_object_get(s, "facts");
			json_object_foreach(facts, k, v)
				printf("%s=%s ", k, json_string_value(v));
			printf("\n");
			if (json_string_value(json_object_get(s, "error")))
				printf("%-16s error: %s\n", "", json_string_value(json_object_get(s, "error")));
		}
		json_decref(root);
	}
	fflush(stdout);
	if (cli_stage_key(cli, "lock", "key") && plugin_load(plugin_dir(NULL), "lock", path,
							     sizeof(path))) {
		char *argv[] = { (char *)"status", NULL };
		struct cli sub = *cli;

		printf("\nlock\n");
		fflush(stdout);
		sub.argc = 1;
		sub.argv = argv;
		return cmd_lock(&sub) == 0 ? 0 : FERRY_FAIL;
	}
	return 0;
}
