/* cli.h: what the supervisor hands its subcommands (core/cmd_*.c); supervisor-internal. */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct ferry_s3;
struct config;

struct cli {
	const char *config_path;            /* -c FILE, $FERRY_CONFIG, or conf/pipeline.ini */
	bool config_given;                  /* -c or $FERRY_CONFIG was given explicitly */
	char **overrides;                   /* -o section.key=value, in order */
	int n_overrides;
	int argc;                           /* arguments after the subcommand name */
	char **argv;
	struct config *cfg;                 /* loaded on demand by cli_config() */
	struct ferry_s3 *s3;                /* opened on demand by cli_s3() */
	volatile sig_atomic_t *signo;       /* last signal received (main.c's handler sets it) */
	int cancel_fd;                      /* readable once a signal came, -1 if none */
};

/* The parsed and expanded pipeline config; NULL after printing a file:line error. */
struct config *cli_config(struct cli *cli);
/* A key of the first enabled stage whose plugin is `plugin` (after defaults of the INI
 * text only: plugin defaults are not known here); NULL when unset or no such stage. */
const char *cli_stage_key(struct cli *cli, const char *plugin, const char *key);
/* The S3 client from [s3] of the config (when the file exists) and the AWS_* environment;
 * NULL after logging why. Closed by cli_release(). */
struct ferry_s3 *cli_s3(struct cli *cli);
/* Add a -o SECTION.KEY=VALUE (copied) after those already given. */
void cli_add_override(struct cli *cli, const char *ov);
/* Free the config, the S3 client and the overrides. */
void cli_release(struct cli *cli);
/* Log a usage or config error of ferry itself (the command line, the pipeline's setup)
 * and return FERRY_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The closest of cands to word (a typo: edit distance 1 for words up to 4 letters, else 2),
 * or NULL. */
const char *cli_suggest(const char *word, const char *const *cands, size_t n);
const char *cli_suggest_command(const char *word);   /* among the commands */
/* ferry's usage overview, and one command's help (-1: no such command). cmd_help.c. */
void cli_overview(FILE *f);
int cli_command_help(const char *name, FILE *f);

/* The subcommands, one a file (core/cmd_NAME.c); each returns an exit code. */
int cmd_run(struct cli *cli);               /* ferry run [--dry-run] [--from STAGE] [STAGE...] */
int cmd_list(struct cli *cli);              /* ferry list */
int cmd_status(struct cli *cli);            /* ferry status */
int cmd_check(struct cli *cli);             /* ferry check */
int cmd_s3(struct cli *cli);                /* ferry s3 ls|head|get|put|rm|cp */
int cmd_lock(struct cli *cli);              /* ferry lock status|break --yes */
int cmd_work(struct cli *cli);
int cmd_help(struct cli *cli);              /* ferry help [COMMAND|stages|stage NAME] */              /* ferry work [--once] [--workers N] ... */

#endif
