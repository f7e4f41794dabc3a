/* cmd_help.c: every command's help (`ferry help CMD`, `ferry CMD --help`: printed, nothing
 * executed), the plugins found (`ferry help stages`), a stage's keys (`ferry help stage
 * NAME`), and "did you mean" for mistyped names. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "ferry_stage.h"
#include "plugin.h"
#include "run.h"

static const char overview[] =
	"usage: ferry [-c FILE] [-v|-q] [--log-format=plain|json] COMMAND [ARGS]\n"
	"\n"
	"commands (ferry help COMMAND, or COMMAND --help, for more):\n"
	"  run       run the pipeline, or some stages of it (they bring in what they need)\n"
	"  list      the stages in order, enabled or not, with their last result\n"
	"  status    the last run (alive, ended or killed), its stages, the replica against\n"
	"            the last sync, recent runs and the lock holder\n"
	"  check     validate the config, load every plugin, probe the S3 endpoint\n"
	"  s3        ls, head, get, put, rm, cp, mb with the pipeline's endpoint and keys\n"
	"  lock      show or break the org's lock object\n"
	"  work      a fleet worker: run the pipeline for every due org of [work]\n"
	"  help      this text; help COMMAND; help stages; help stage NAME\n"
	"\n"
	"options:\n"
	"  -c, --config FILE   pipeline INI (default $FERRY_CONFIG, else conf/pipeline.ini)\n"
	"  -o SECTION.KEY=VAL  override a key of [pipeline], [s3], [work] or [stage NAME]\n"
	"  -v, --verbose       debug logging      -q, --quiet   warnings and errors only\n"
	"  --log-format=FMT    plain (default) or json\n"
	"  -h, --help          this text          --version     print the version\n"
	"\n"
	"exit codes: 0 success, 1 a stage failed (run unwound), 2 usage or config error,\n"
	"  3 lock not acquired within max_wait, 4 fenced (newer data or lock elsewhere),\n"
	"  128+N after signal N (130 SIGINT, 143 SIGTERM), once unwinding is done\n";

struct help {
	const char *name;
	const char *text;
};

static const struct help helps[] = {
	{ "run",
	  "usage: ferry [-c FILE] [-o STAGE.KEY=VALUE]... run [--dry-run] [--exact]\n"
	  "                 [--discard-local] [--from STAGE | STAGE...] [--KEY VALUE]...\n"
	  "\n"
	  "Runs the pipeline's enabled stages in INI order; if one fails (or a signal or the\n"
	  "deadline comes) the stages that ran are unwound in reverse (undo, cleanup).\n"
	  "\n"
	  "  STAGE...         run only these stages. Facts of the other stages (what lock,\n"
	  "                   pull ... recorded) come from the run journal in state_dir.\n"
	  "                   Stages that need a live resource get it: `ferry run push`\n"
	  "                   brings in lock and mount before push and unlock after it\n"
	  "                   (logged: bringing in lock, mount, unlock for push). A lock or\n"
	  "                   mount still held by a run that was killed is used as it is.\n"
	  "  --exact          run exactly the stages named, nothing brought in\n"
	  "  --from STAGE     this stage and every enabled stage after it\n"
	  "  --dry-run        each selected stage says what it would do; nothing changes\n"
	  "  --discard-local  let pull replace replica pages changed since the last sync\n"
	  "                   and never pushed (a rerun of pull refuses otherwise)\n"
	  "  --KEY VALUE      after a single STAGE: -o STAGE.KEY=VALUE\n"
	  "                   (ferry run schedule --today 2026-03-09 --run-id manual)\n"
	  "\n"
	  "Exit codes: 0, 1 a stage failed, 2 usage or config, 3 no lock within max_wait,\n"
	  "4 fenced (someone else's newer object or lock), 128+N after signal N.\n" },
	{ "list",
	  "usage: ferry [-c FILE] list\n"
	  "\n"
	  "The stages of the pipeline INI in order: name, plugin, enabled, and the result of\n"
	  "each in the run journal. Loads no plugin and contacts nothing.\n" },
	{ "status",
	  "usage: ferry [-c FILE] status [-v] [--json]\n"
	  "       ferry [-c FILE] status --org ID [--last N] [--json]\n"
	  "\n"
	  "The last run in state_dir: running now (its pid), ended (result, exit, how long\n"
	  "ago) or killed (the journal says running but no process holds the run lock); a\n"
	  "deadline that ended it; each stage's result, time, and whether it ran in that run\n"
	  "or was carried over from an earlier one; the replica against its last sync\n"
	  "(\"replica: N pages changed since the last sync (not pushed)\", which hashes the\n"
	  "replica); the last runs from STATE_DIR/history.jsonl; the lock holder from S3.\n"
	  "\n"
	  "  -v        every stage's facts and whole error messages\n"
	  "  --json    all of it as one JSON document\n"
	  "  --org ID  a fleet org's run records from the bucket ([work] records)\n" },
	{ "check",
	  "usage: ferry [-c FILE] check\n"
	  "\n"
	  "Validates the pipeline INI (every key of every stage against its plugin's types),\n"
	  "loads every enabled plugin and calls its check (an exec stage's program must\n"
	  "exist), checks the order of stages (a stage that needs the lock or the mount must\n"
	  "come after the stage that provides it and before the one that ends it), and probes\n"
	  "the S3 endpoint in its dialect ([s3] dialect): create if absent twice, replace and\n"
	  "delete with a wrong version, a write on an absent key, a ranged GET, UploadPartCopy,\n"
	  "on scratch keys it removes; prints the matrix. Prints one line per stage; exit 0,\n"
	  "1 (the store ignores a condition ferry relies on) or 2. Writes only the probe cache.\n" },
	{ "s3",
	  "usage: ferry [-c FILE] s3 ls [-r] [[s3://BUCKET/]PREFIX]\n"
	  "       ferry [-c FILE] s3 head KEY\n"
	  "       ferry [-c FILE] s3 get KEY [FILE|-] [--if-match ETAG]\n"
	  "       ferry [-c FILE] s3 put FILE|- KEY [--if-none-match] [--if-match ETAG]\n"
	  "       ferry [-c FILE] s3 rm KEY [--if-match ETAG]\n"
	  "       ferry [-c FILE] s3 cp SRC DST [--if-none-match] [--if-match ETAG]\n"
	  "       ferry [-c FILE] s3 mb\n"
	  "\n"
	  "KEY is s3://BUCKET/KEY (BUCKET must be the configured one) or a plain key in the\n"
	  "configured bucket ([s3] bucket or BUCKET_NAME). `get` writes to stdout without FILE.\n"
	  "ls lists one level (like `aws s3 ls`); -r lists every key under the prefix.\n"
	  "mb creates the configured bucket (already yours: success, with a note).\n"
	  "Exit: 0 done, 1 the request failed (message names it), 2 usage error.\n" },
	{ "lock",
	  "usage: ferry [-c FILE] lock status [--key KEY]\n"
	  "       ferry [-c FILE] lock break --yes [--key KEY]\n"
	  "\n"
	  "status  show the lock object: holder, instance, pid, generation, age and\n"
	  "        expiry judged by the server's clock, legacy (shell locker) or not\n"
	  "break   remove the lock, conditional on the ETag just shown, for an operator\n"
	  "        who knows the holder is dead; refuses without --yes (exit 2)\n"
	  "--key   the lock object's key (default: key of the first lock stage)\n" },
	{ "work",
	  "usage: ferry [-c FILE] [-o SECTION.KEY=VALUE]... work [--once] [--workers N]\n"
	  "                  [--max-runs N] [--dry-run]\n"
	  "\n"
	  "Runs the pipeline for every org under [work] orgs that has no run record for the\n"
	  "current period (lock, the other stages, record, unlock: child `ferry run`s with\n"
	  "ORG_ID set), skipping orgs whose lock another worker holds. Without --once it\n"
	  "sleeps [work] idle and passes again.\n"
	  "\n"
	  "  --once          exit after one pass\n"
	  "  --workers N     pipelines at once (default [work] workers)\n"
	  "  --max-runs N    exit once N pipelines ran (default [work] max_runs; 0 = no limit)\n"
	  "  --dry-run       list the orgs and what a pass would do; write nothing\n"
	  "\n"
	  "exit codes: 0 every due org done (here or by another worker), 1 some run failed\n"
	  "  (retry later), 2 usage or config error, 128+N after signal N (143 SIGTERM) once\n"
	  "  the running pipelines have unwound and released their locks\n" },
	{ "help",
	  "usage: ferry help [COMMAND | stages | stage NAME]\n"
	  "\n"
	  "  help COMMAND     a command's options (same as ferry COMMAND --help)\n"
	  "  help stages      the stage plugins found, with what each needs and provides\n"
	  "  help stage NAME  a stage's keys: type, default, allowed values, meaning (NAME is\n"
	  "                   a plugin, or a [stage NAME] of the pipeline INI)\n" },
};

#define N_HELPS (sizeof(helps) / sizeof(helps[0]))

/* Levenshtein distance, capped: enough to tell a typo from another word. */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j, prev[64], cur[64];

	if (la >= 63 || lb >= 63)
		return 99;
	for (j = 0; j <= lb; j++)
		prev[j] = j;
	for (i = 1; i <= la; i++) {
		cur[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
			size_t del = prev[j] + 1, ins = cur[j - 1] + 1;

			cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
		memcpy(prev, cur, (lb + 1) * sizeof(size_t));
	}
	return prev[lb];
}

const char *cli_suggest(const char *word, const char *const *cands, size_t n)
{
	const char *best = NULL;
	size_t i, bd = 99, limit = strlen(word) <= 4 ? 1 : 2;

	for (i = 0; i < n; i++) {
		size_t d = distance(word, cands[i]);

		if (d < bd) {
			bd = d;
			best = cands[i];
		}
	}
	return bd <= limit ? best : NULL;
}

const char *cli_suggest_command(const char *word)
{
	const char *names[N_HELPS];
	size_t i;

	for (i = 0; i < N_HELPS; i++)
		names[i] = helps[i].name;
	return cli_suggest(word, names, N_HELPS);
}

void cli_overview(FILE *f)
{
	fputs(overview, f);
}

int cli_command_help(const char *name, FILE *f)
{
	size_t i;

	for (i = 0; i < N_HELPS; i++)
		if (strcmp(helps[i].name, name) == 0) {
			fputs(helps[i].text, f);
			return 0;
		}
	return -1;
}

/* Print text word-wrapped to width, each line indented. */
static void wrap(const char *text, int indent, int width)
{
	const char *p = text;

	while (*p) {
		int room = width - indent, n = (int)strlen(p);

		if (n > room) {
			n = room;
			while (n > 0 && p[n] != ' ')
				n--;
			if (n == 0)
				n = room;
		}
		printf("%*s%.*s\n", indent, "", n, p);
		p += n;
		while (*p == ' ')
			p++;
	}
}

/* The pipeline INI when it loads (a plugin_dir, [stage NAME] names), else NULL: help
 * must work without a usable config, so its errors are not reported here. */
static struct config *quiet_config(struct cli *cli)
{
	char err[2048];

	if (cli->cfg)
		return cli->cfg;
	if (!cli->config_given && access(cli->config_path, F_OK) != 0)
		return NULL;
	if (cfg_load(&cli->cfg, cli->config_path, cli->overrides, cli->n_overrides, err,
		     sizeof(err)) != 0) {
		cfg_free(cli->cfg);
		cli->cfg = NULL;
	}
	return cli->cfg;
}

static const char *type_name(enum ferry_key_type t)
{
	static const char *const names[] = { "string", "path", "bool", "int", "duration",
					     "size", "objkey", "enum" };

	return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

static int help_stages(struct cli *cli)
{
	struct config *cfg = quiet_config(cli);
	const char *dir = plugin_dir(cfg ? cfg_pipeline(cfg, "plugin_dir") : NULL);
	char err[2048];
	size_t n, i;
	char **names = plugin_list(dir, &n);

	printf("stage plugins in %s (ferry help stage NAME for its keys):\n\n", dir);
	for (i = 0; i < n; i++) {
		const struct ferry_stage *d = plugin_load(dir, names[i], err, sizeof(err));
		const char *needs = plugin_res(d, PLUGIN_NEEDS), *prov = plugin_res(d, PLUGIN_PROVIDES);
		const char *ends = plugin_res(d, PLUGIN_ENDS), *sum = plugin_res(d, PLUGIN_SUMMARY);

		if (!d) {
			printf("  %-10s (cannot load: %s)\n", names[i], err);
		} else {
			char res[200];

			printf("  %s\n", names[i]);
			wrap(sum && *sum ? sum : "", 6, 80);
			snprintf(res, sizeof(res), "%s%s%s%s%s%s", needs && *needs ? "needs: " : "",
				 needs && *needs ? needs : "", prov && *prov ? "provides: " : "",
				 prov && *prov ? prov : "", ends && *ends ? "ends: " : "",
				 ends && *ends ? ends : "");
			if (*res)
				printf("      (%s)\n", res);
		}
	}
	plugin_list_free(names, n);
	if (!n)
		printf("  (none found)\n");
	return n ? 0 : FERRY_FAIL;
}

static int help_stage(struct cli *cli, const char *name)
{
	struct config *cfg = quiet_config(cli);
	const char *dir = plugin_dir(cfg ? cfg_pipeline(cfg, "plugin_dir") : NULL);
	const char *plugin = name, *sum;
	const struct ferry_stage *d;
	const struct ferry_key *k;
	struct run r = { 0 };
	char err[2048];

	if (cfg) {                          /* a [stage NAME] of the INI names its plugin */
		struct stage_rt *st;

		run_stages_from_config(&r, cfg);
		st = run_stage(&r, name);
		if (st)
			plugin = st->plugin;
	}
	d = plugin_load(dir, plugin, err, sizeof(err));
	if (!d) {
		size_t n;
		char **names = plugin_list(dir, &n);
		const char *s = cli_suggest(plugin, (const char *const *)names, n);

		cli_usage_error("no stage plugin '%s' in %s%s%s%s", plugin, dir, s ? " (did you mean '" : "",
				s ? s : "", s ? "'?)" : "");
		plugin_list_free(names, n);
		run_release(&r);
		return FERRY_USAGE;
	}
	sum = plugin_res(d, PLUGIN_SUMMARY);
	printf("stage plugin %s\n", plugin);
	wrap(sum && *sum ? sum : "", 2, 80);
	if (strcmp(plugin, name) != 0)
		printf("([stage %s] of %s uses it)\n", name, cli->config_path);
	if (plugin_res(d, PLUGIN_NEEDS) && *plugin_res(d, PLUGIN_NEEDS))
		printf("needs held while it runs: %s\n", plugin_res(d, PLUGIN_NEEDS));
	if (plugin_res(d, PLUGIN_PROVIDES) && *plugin_res(d, PLUGIN_PROVIDES))
		printf("provides: %s\n", plugin_res(d, PLUGIN_PROVIDES));
	if (plugin_res(d, PLUGIN_ENDS) && *plugin_res(d, PLUGIN_ENDS))
		printf("ends: %s\n", plugin_res(d, PLUGIN_ENDS));
	printf("\nkeys of [stage NAME]:\n");
	for (k = d->keys; k && k->name; k++) {
		printf("\n  %s (%s", k->name, type_name(k->type));
		if (k->flags & FERRY_KEY_REQUIRED)
			printf(", required");
		else if (k->def)
			printf(", default %s", *k->def ? k->def : "\"\"");
		if (k->flags & FERRY_KEY_SECRET)
			printf(", secret: never shown");
		printf(")\n");
		wrap(k->help ? k->help : "", 6, 80);
		if (k->choices)
			printf("      one of: %s\n", k->choices);
	}
	printf("\nEvery stage also takes `plugin` and `enabled`. Set a key in [stage NAME] of\n"
	       "the INI, or for one run with -o NAME.KEY=VALUE.\n");
	run_release(&r);
	return 0;
}

int cmd_help(struct cli *cli)
{
	if (cli->argc == 0) {
		cli_overview(stdout);
		return 0;
	}
	if (strcmp(cli->argv[0], "--help") == 0 || strcmp(cli->argv[0], "-h") == 0)
		return cli_command_help("help", stdout);
	if (strcmp(cli->argv[0], "stages") == 0)
		return help_stages(cli);
	if (strcmp(cli->argv[0], "stage") == 0) {
		if (cli->argc < 2)
			return cli_usage_error("help stage NAME: which stage? (ferry help stages "
					       "lists them)");
		return help_stage(cli, cli->argv[1]);
	}
	if (cli_command_help(cli->argv[0], stdout) == 0)
		return 0;
	{
		const char *s = cli_suggest_command(cli->argv[0]);

		return cli_usage_error("no command '%s'%s%s%s; ferry help lists them", cli->argv[0],
				       s ? " (did you mean '" : "", s ? s : "", s ? "'?)" : "");
	}
}
