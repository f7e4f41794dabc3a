/* main.c: ferry's command line: the options, the subcommand table (each subcommand in its
 * core/cmd_NAME.c), signals, exit codes (DESIGN §4). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ferry_log.h"
#include "ferry_stage.h"
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
	"  work [--once] [--workers N] [--max-runs N] [--dry-run]\n"
	"                      run the pipeline for every due org of [work] (a fleet worker);\n"
	"                      status --org ID shows an org's run records\n"
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
	{ "work", cmd_work },
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
			cli_add_override(&cli, argv[++i]);
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
	cli.signo = &got_signal;
	cli.cancel_fd = signal_pipe[0];
	cli.argc = argc - i;
	cli.argv = argv + i;
	rc = cmd->fn(&cli);
	cli_release(&cli);
	plugin_unload_all();
	return rc;
}
