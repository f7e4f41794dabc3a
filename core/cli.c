/* cli.c: what the subcommands share: the config and the S3 client, loaded on demand, the
 * -o overrides, and how a usage error is told. */
#include "cli.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"
#include "ferry_log.h"
#include "ferry_s3.h"
#include "run.h"

struct config *cli_config(struct cli *cli)
{
	char err[2048];

	if (cli->cfg)
		return cli->cfg;
	if (cfg_load(&cli->cfg, cli->config_path, cli->overrides, cli->n_overrides, err,
		     sizeof(err)) != 0) {
		ferry_logf(FERRY_ERROR, "ferry", err, NULL);
		return NULL;
	}
	return cli->cfg;
}

const char *cli_stage_key(struct cli *cli, const char *plugin, const char *key)
{
	struct config *cfg = cli_config(cli);
	const char *value = NULL;
	struct run r = { 0 };
	size_t i;

	if (!cfg)
		return NULL;
	run_stages_from_config(&r, cfg);
	for (i = 0; i < r.n; i++) {
		if (r.st[i].enabled && strcmp(r.st[i].plugin, plugin) == 0) {
			value = cfg_get(cfg, r.st[i].name, key);
			break;
		}
	}
	run_release(&r);
	return value;
}

struct ferry_s3 *cli_s3(struct cli *cli)
{
	struct ferry_s3_conf sc;
	struct config *cfg = NULL;
	char err[1024] = "";

	if (cli->s3)
		return cli->s3;
	if (cli->config_given || access(cli->config_path, F_OK) == 0) {
		cfg = cli_config(cli);
		if (!cfg)
			return NULL;
	}
	if (cfg_s3_conf(cfg, &sc, err, sizeof(err)) == 0)
		cli->s3 = ferry_s3_new(&sc, err, sizeof(err));
	ferry_s3_conf_release(&sc);
	if (!cli->s3) {
		char msg[1200];

		snprintf(msg, sizeof(msg), "cannot open the S3 client: %s", err);
		ferry_logf(FERRY_ERROR, "ferry", msg, NULL);
	}
	return cli->s3;
}

void cli_add_override(struct cli *cli, const char *ov)
{
	cli->overrides = realloc(cli->overrides, (size_t)(cli->n_overrides + 1) * sizeof(char *));
	if (!cli->overrides)
		abort();
	cli->overrides[cli->n_overrides++] = strdup(ov);
}

void cli_release(struct cli *cli)
{
	int i;

	if (cli->s3)
		ferry_s3_free(cli->s3);
	cfg_free(cli->cfg);
	for (i = 0; i < cli->n_overrides; i++)
		free(cli->overrides[i]);
	free(cli->overrides);
	cli->s3 = NULL;
	cli->cfg = NULL;
	cli->overrides = NULL;
	cli->n_overrides = 0;
}

int cli_usage_error(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ferry_logf(FERRY_ERROR, "ferry", buf, NULL);
	return FERRY_USAGE;
}
