/* main.c: ferry's command line: the options, the subcommand table (each subcommand in its
 * core/cmd_NAME.c), signals, exit codes. */
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

static int usage(int rc)
{
	cli_overview(rc ? stderr : stdout);
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
	{ "help", cmd_help },
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

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
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
				const char *s = cli_suggest_command(a);

				fprintf(stderr, "ferry: unknown command '%s'%s%s%s; ferry help lists "
					"them\n", a, s ? " (did you mean '" : "", s ? s : "",
					s ? "'?)" : "");
				return FERRY_USAGE;
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
	/* COMMAND --help anywhere after the command: its help, nothing executed */
	for (k = 0; k < (size_t)cli.argc && cmd->fn != cmd_help; k++)
		if (strcmp(cli.argv[k], "--help") == 0 || strcmp(cli.argv[k], "-h") == 0) {
			cli_command_help(cmd->name, stdout);
			cli_release(&cli);
			return 0;
		}
	rc = cmd->fn(&cli);
	cli_release(&cli);
	plugin_unload_all();
	return rc;
}
