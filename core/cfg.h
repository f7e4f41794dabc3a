/* cfg.h: the pipeline INI: parse with inih, apply -o, expand ${VAR}, validate. */
#ifndef FERRY_CFG_H
#define FERRY_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ferry_stage.h"

enum cfg_kind { CFG_PIPELINE, CFG_S3, CFG_STAGE, CFG_WORK };

struct cfg_entry {
	char *key;                          /* key name */
	char *raw;                          /* value as written */
	char *value;                        /* value after ${...} expansion */
	const char *file;                   /* INI path, or NULL for -o */
	int line;                           /* 1-based line in file; 0 for -o */
};

struct cfg_section {
	char *name;                         /* "pipeline", "s3" or the stage's NAME */
	enum cfg_kind kind;
	const char *file;                   /* the INI path (NULL if made by -o) */
	int line;                           /* line of the [header]; 0 if implicit */
	struct cfg_entry *e;                /* entries in file order */
	size_t n;
	size_t cap;
};

struct config {
	char *path;                         /* the INI as given */
	char *dir;                          /* absolute directory of the INI */
	struct cfg_section *s;              /* sections in file order */
	size_t n;
	size_t cap;
};

/* Parse path, apply overrides ("section.key=value"), expand variables and check the
 * structure (sections, [pipeline] and [s3] keys, stage names, `plugin`, `enabled`).
 * Returns 0, or FERRY_USAGE with "FILE:LINE: ..." in err. */
int cfg_load(struct config **out, const char *path, char *const *overrides, int n_overrides,
	     char *err, size_t errlen);
void cfg_free(struct config *cfg);

struct cfg_section *cfg_find_section(const struct config *cfg, const char *name);
struct cfg_entry *cfg_find_entry(const struct cfg_section *sec, const char *key);
/* Expanded value of section.key, or NULL. */
const char *cfg_get(const struct config *cfg, const char *section, const char *key);
/* [pipeline] key as set, else its default from the [pipeline] key table (state_dir,
 * name, deadline); NULL when neither (plugin_dir). The defaults live in that table only. */
const char *cfg_pipeline(const struct config *cfg, const char *key);
/* [work] key (`ferry work`, core/cmd_work.c) as set, else its default from the [work] key
 * table; NULL when neither. The section is found by kind: a stage may be named "work". */
const char *cfg_work(const struct config *cfg, const char *key);
/* The [work] section, or NULL when the INI has none. */
struct cfg_section *cfg_work_section(const struct config *cfg);
/* "FILE:LINE" or "-o SECTION.KEY" for messages. */
void cfg_where(const struct cfg_section *sec, const struct cfg_entry *e, char *buf, size_t len);

/* Check a stage section against its plugin's key table: unknown keys, required keys,
 * typed values. Returns 0 or FERRY_USAGE with the located message in err. */
int cfg_check_keys(const struct cfg_section *sec, const struct ferry_key *keys, char *err,
		   size_t errlen);
/* The declared key of a table, or NULL. */
const struct ferry_key *cfg_key_find(const struct ferry_key *keys, const char *name);
/* Validate text against a declared key's type (and choices); 0 or -1 with a reason
 * ("bad duration 'x'", "'x' is not quick, full or none"). */
int cfg_value_check(const struct ferry_key *k, const char *value, char *err, size_t errlen);

/* Fill an S3 client config from [s3] of cfg (may be NULL) and the environment: 0, or
 * FERRY_USAGE with "FILE:LINE: key 'K': why" in err. */
struct ferry_s3_conf;
int cfg_s3_conf(const struct config *cfg, struct ferry_s3_conf *sc, char *err, size_t errlen);

#endif
