/* cli.h: what the supervisor hands its subcommands (core/cmd_*.c); supervisor-internal. */
#ifndef FERRY_CLI_H
#define FERRY_CLI_H

#include <stdbool.h>
#include <stddef.h>

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
};

/* The parsed and expanded pipeline config; NULL after printing a file:line error. */
struct config *cli_config(struct cli *cli);
/* A key of the first enabled stage whose plugin is `plugin` (after defaults of the INI
 * text only: plugin defaults are not known here); NULL when unset or no such stage. */
const char *cli_stage_key(struct cli *cli, const char *plugin, const char *key);
/* The S3 client from [s3] of the config (when the file exists) and the AWS_* environment;
 * NULL after logging why. Closed by the supervisor at exit. */
struct ferry_s3 *cli_s3(struct cli *cli);

/* Subcommands implemented outside main.c; each returns an exit code (DESIGN §4). */
int cmd_s3(struct cli *cli);                /* core/cmd_s3.c:   ferry s3 ls|head|get|put|rm|cp */
int cmd_lock(struct cli *cli);              /* core/cmd_lock.c: ferry lock status|break --yes */

#endif
