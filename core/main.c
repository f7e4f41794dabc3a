/* main.c: ferry's command line: the subcommand table, signals, exit codes (DESIGN §4). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg.h"
#include "cli.h"
#include "ferry_log.h"
#include "ferry_parse.h"
#include "ferry_s3.h"
#include "journal.h"
#include "pipeline.h"
#include "plugin.h"

/* The only mutable globals of ferry: what the signal handler tells the run loop. */
static volatile sig_atomic_t got_signal;    /* last SIGINT/SIGTERM/SIGHUP number */
static int signal_pipe[2] = { -1, -1 };     /* self-pipe: readable once a signal came */

static void on_signal(int signo)
{
	int saved = errno;
	ssize_t n;

	got_signal = signo;
	n = write(signal_pipe[1], "s", 1);
	(void)n;
	errno = saved;
}

static void signals_setup(void)
{
	struct sigaction sa;

	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
		signal_pipe[0] = signal_pipe[1] = -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;                    /* no SA_RESTART: blocking waits see EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static const char usage_text[] =
	"usage: ferry [-c FILE] [-v|-q] [--log-format=plain|json] COMMAND [ARGS]\n"
	"\n"
	"commands:\n"
	"  run [--dry-run] [--from STAGE] [STAGE...] [-o STAGE.KEY=VALUE]...\n"
	"                      run the pipeline (or only the named stages, with facts of\n"
	"                      earlier stages from the run journal); after a single STAGE,\n"
	"                      --KEY VALUE is short for -o STAGE.KEY=VALUE\n"
	"  list                stages in order: name, plugin, enabled, last result\n"
	"  status              the last run journal and the current lock holder\n"
	"  check               validate the config, load plugins, probe the S3 endpoint\n"
	"  s3 ls|head|get|put|rm|cp ...\n"
	"                      S3 operations with the pipeline's endpoint and credentials\n"
	"  lock status|break --yes\n"
	"                      show or break the org's lock object\n"
	"\n"
	"options:\n"
	"  -c, --config FILE   pipeline INI (default $FERRY_CONFIG, else conf/pipeline.ini)\n"
	"  -o SECTION.KEY=VAL  override a key of [pipeline], [s3] or [stage NAME]\n"
	"  -v, --verbose       debug logging      -q, --quiet   warnings and errors only\n"
	"  --log-format=FMT    plain (default) or json\n"
	"  -h, --help          this text          --version     print the version\n"
	"\n"
	"exit codes: 0 success, 1 a stage failed (run unwound), 2 usage or config error,\n"
	"  3 lock not acquired within max_wait, 4 fenced (newer data or lock elsewhere),\n"
	"  128+N after signal N (130 SIGINT, 143 SIGTERM), once unwinding is done\n";

static int usage(int rc)
{
	fputs(usage_text, rc ? stderr : stdout);
	return rc;
}

static int errorf(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int errorf(int rc, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ferry_logf(FERRY_ERROR, "ferry", buf, NULL);
	return rc;
}

static void add_override(struct cli *cli, const char *ov)
{
	cli->overrides = realloc(cli->overrides, (size_t)(cli->n_overrides + 1) * sizeof(char *));
	if (!cli->overrides)
		abort();
	cli->overrides[cli->n_overrides++] = strdup(ov);
}

static int cmd_run(struct cli *cli)
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
			add_override(cli, cli->argv[++i]);
		} else if (strncmp(a, "--", 2) == 0 && a[2] && o.n_only == 1) {
			/* --KEY VALUE / --KEY=VALUE after a single stage name */
			char key[128], *ov, *p;
			const char *eq = strchr(a, '='), *val;
			size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);

			if (kl == 0 || kl >= sizeof(key)) {
				free(names);
				return errorf(FERRY_USAGE, "bad option '%s'", a);
			}
			memcpy(key, a + 2, kl);
			key[kl] = '\0';
			for (p = key; *p; p++)
				if (*p == '-')
					*p = '_';
			if (eq) {
				val = eq + 1;
			} else if (i + 1 < cli->argc) {
				val = cli->argv[++i];
			} else {
				free(names);
				return errorf(FERRY_USAGE, "option '%s' needs a value", a);
			}
			if (asprintf(&ov, "%s.%s=%s", names[0], key, val) < 0)
				abort();
			add_override(cli, ov);
			free(ov);
		} else if (a[0] == '-') {
			free(names);
			return errorf(FERRY_USAGE, "unknown option '%s' for run%s", a,
				      o.n_only == 1 ? "" : " (--KEY VALUE works after a single stage name)");
		} else {
			names[o.n_only++] = cli->argv[i];
		}
	}
	cfg = cli_config(cli);
	if (!cfg) {
		free(names);
		return FERRY_USAGE;
	}
	rc = pipeline_prepare(&r, cfg, cli->config_path, &o);
	if (rc == 0) {
		r.signo = &got_signal;
		r.cancel_fd = signal_pipe[0];
		rc = pipeline_run(&r);
	}
	run_release(&r);
	free(names);
	return rc;
}

/* ferry list: stages in order with their last result from the journal. */
static int cmd_list(struct cli *cli)
{
	struct config *cfg = cli_config(cli);
	struct run r;
	char err[1024];
	size_t i;

	if (!cfg)
		return FERRY_USAGE;
	if (cli->argc)
		return errorf(FERRY_USAGE, "list takes no arguments");
	/* no plugins are loaded: list must work even when one is missing */
	memset(&r, 0, sizeof(r));
	r.cfg = cfg;
	r.config_path = cli->config_path;
	for (i = 0; i < cfg->n; i++)
		if (cfg->s[i].kind == CFG_STAGE)
			r.n++;
	r.st = calloc(r.n ? r.n : 1, sizeof(*r.st));
	r.n = 0;
	for (i = 0; i < cfg->n; i++) {
		const char *en;
		bool enabled = true;

		if (cfg->s[i].kind != CFG_STAGE)
			continue;
		r.st[r.n].name = strdup(cfg->s[i].name);
		r.st[r.n].plugin = strdup(cfg_get(cfg, cfg->s[i].name, "plugin"));
		en = cfg_get(cfg, cfg->s[i].name, "enabled");
		if (en)
			ferry_parse_bool(en, &enabled);
		r.st[r.n].enabled = enabled;
		r.n++;
	}
	{
		const char *sd = cfg_get(cfg, "pipeline", "state_dir");

		r.state_dir = strdup(sd ? sd : "/var/lib/ferry");
	}
	if (journal_load(&r, err, sizeof(err)) == -2)
		ferry_logf(FERRY_WARN, "ferry", err, NULL);
	printf("%-4s %-16s %-10s %-8s %s\n", "#", "stage", "plugin", "enabled", "last result");
	for (i = 0; i < r.n; i++)
		printf("%-4zu %-16s %-10s %-8s %s\n", i + 1, r.st[i].name, r.st[i].plugin,
		       r.st[i].enabled ? "yes" : "no", run_result_name(r.st[i].result));
	run_release(&r);
	return 0;
}

/* ferry status: the last journal, then the lock holder from S3 (ferry lock status). */
static int cmd_status(struct cli *cli)
{
	struct config *cfg = cli_config(cli);
	const char *sd;
	char path[4200];
	json_error_t je;
	json_t *root, *stages, *s, *facts, *v;
	size_t i;
	const char *k;

	if (!cfg)
		return FERRY_USAGE;
	sd = cfg_get(cfg, "pipeline", "state_dir");
	snprintf(path, sizeof(path), "%s/journal.json", sd ? sd : "/var/lib/ferry");
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

/* ferry check: config, plugins, every stage's check, then the endpoint probe. */
static int cmd_check(struct cli *cli)
{
	struct pipeline_opts o = { .check_all = true };
	struct config *cfg = cli_config(cli);
	struct ferry_s3_features f;
	struct ferry_s3_res res;
	struct ferry_s3 *s3;
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
		run_release(&r);
		return rc;
	}
	s3 = run_s3(&r);
	if (!s3) {
		printf("s3: cannot open client: %s\n", r.s3_err);
		run_release(&r);
		return FERRY_USAGE;
	}
	memset(&res, 0, sizeof(res));
	prc = ferry_s3_probe(s3, ".ferry-probe/", &f, &res);
	if (prc != FERRY_S3_OK) {
		printf("s3: probe of bucket '%s' failed: %s\n", ferry_s3_bucket(s3), res.msg);
		run_release(&r);
		return rc ? rc : FERRY_FAIL;
	}
	printf("s3: bucket '%s' reachable\n", ferry_s3_bucket(s3));
	printf("s3: conditional create (If-None-Match: *)  %s\n", f.conditional_create ? "yes" : "NO");
	printf("s3: conditional put (If-Match)             %s\n", f.conditional_put ? "yes" : "NO");
	printf("s3: conditional delete (If-Match)          %s\n", f.conditional_delete ? "yes" : "no");
	printf("s3: UploadPartCopy                         %s\n", f.upload_part_copy ? "yes" : "no");
	if (!f.conditional_create || !f.conditional_put) {
		printf("s3: the store does not enforce conditional writes: the lock stage refuses to "
		       "run on this endpoint\n");
		if (!rc)
			rc = FERRY_FAIL;
	}
	run_release(&r);
	return rc;
}

struct command {
	const char *name;
	int (*fn)(struct cli *cli);
};

static const struct command commands[] = {
	{ "run", cmd_run },
	{ "list", cmd_list },
	{ "status", cmd_status },
	{ "check", cmd_check },
	{ "s3", cmd_s3 },
	{ "lock", cmd_lock },
};

int main(int argc, char **argv)
{
	struct cli cli = { 0 };
	enum ferry_level lv = FERRY_INFO;
	enum ferry_log_format fmt = FERRY_LOG_PLAIN;
	const struct command *cmd = NULL;
	const char *env_cfg = getenv("FERRY_CONFIG");
	int i, rc;
	size_t k;

	cli.config_path = env_cfg && *env_cfg ? env_cfg : "conf/pipeline.ini";
	cli.config_given = env_cfg && *env_cfg;
	for (i = 1; i < argc && !cmd; i++) {
		const char *a = argv[i];

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 || strcmp(a, "help") == 0)
			return usage(0);
		if (strcmp(a, "--version") == 0) {
			printf("ferry %s (stage ABI %d)\n", FERRY_VERSION, FERRY_STAGE_ABI);
			return 0;
		}
		if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
			cli.config_path = argv[++i];
			cli.config_given = true;
		} else if (strncmp(a, "--config=", 9) == 0) {
			cli.config_path = a + 9;
			cli.config_given = true;
		} else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
			lv = FERRY_DEBUG;
		} else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
			lv = FERRY_WARN;
		} else if (strcmp(a, "-o") == 0 && i + 1 < argc) {
			add_override(&cli, argv[++i]);
		} else if (strncmp(a, "--log-format=", 13) == 0) {
			if (strcmp(a + 13, "json") == 0)
				fmt = FERRY_LOG_JSON;
			else if (strcmp(a + 13, "plain") == 0)
				fmt = FERRY_LOG_PLAIN;
			else {
				fprintf(stderr, "ferry: unknown log format '%s' (plain or json)\n", a + 13);
				return FERRY_USAGE;
			}
		} else if (a[0] == '-') {
			fprintf(stderr, "ferry: unknown option '%s'\n", a);
			return usage(FERRY_USAGE);
		} else {
			for (k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
				if (strcmp(commands[k].name, a) == 0)
					cmd = &commands[k];
			if (!cmd) {
				fprintf(stderr, "ferry: unknown command '%s'\n", a);
				return usage(FERRY_USAGE);
			}
		}
	}
	if (!cmd)
		return usage(FERRY_USAGE);
	ferry_log_setup(lv, fmt);
	signals_setup();
	cli.argc = argc - i;
	cli.argv = argv + i;
	rc = cmd->fn(&cli);
	if (cli.s3)
		ferry_s3_free(cli.s3);
	cfg_free(cli.cfg);
	for (i = 0; i < cli.n_overrides; i++)
		free(cli.overrides[i]);
	free(cli.overrides);
	plugin_unload_all();
	return rc;
}
