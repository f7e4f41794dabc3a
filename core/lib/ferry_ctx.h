/* ferry_ctx.h: what ferry offers a stage through its (opaque) context. These functions
 * are implemented by the supervisor (core/ctx.c) and exported by the ferry binary to the
 * plugins it loads (core/ferry.dynlist); libferry never calls them. */
#ifndef FERRY_CTX_H
#define FERRY_CTX_H

#include <stdbool.h>
#include <stdint.h>
#include "ferry_stage.h"

struct ferry_s3;

/* Configuration of this stage's [stage NAME] section, after ${VAR} expansion and
 * -o overrides; the key's declared default when unset; NULL when neither. */
const char *ferry_cfg(const struct ferry_ctx *c, const char *key);
bool ferry_cfg_bool(const struct ferry_ctx *c, const char *key);          /* false if unset */
int64_t ferry_cfg_int(const struct ferry_ctx *c, const char *key);        /* 0 if unset */
uint64_t ferry_cfg_ms(const struct ferry_ctx *c, const char *key);        /* DURATION in ms */
uint64_t ferry_cfg_bytes(const struct ferry_ctx *c, const char *key);     /* SIZE in bytes */
/* A PATH key resolved against the directory of the INI file that set it (the
 * current directory for defaults and -o); malloc'd, the caller frees; NULL if unset. */
char *ferry_cfg_path(const struct ferry_ctx *c, const char *key);
/* A key of [pipeline] or [s3] (section "pipeline" or "s3"). */
const char *ferry_cfg_global(const struct ferry_ctx *c, const char *section, const char *key);
/* Fail with a configuration error naming file:line and key: "FILE:LINE: key 'K': ...".
 * Returns FERRY_USAGE; for use in check(). */
int ferry_cfg_error(struct ferry_ctx *c, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Facts: small key/value outputs a stage publishes; journaled after each stage so a
 * later `ferry run STAGE` sees them. `stage` is a stage name, or a plugin name (the
 * first stage using that plugin), or NULL for the calling stage itself. */
const char *ferry_fact(const struct ferry_ctx *c, const char *stage, const char *key);
int ferry_fact_set(struct ferry_ctx *c, const char *key, const char *value);
/* Call fn for every fact of every stage (in pipeline order); stops at a non-zero return. */
int ferry_fact_each(const struct ferry_ctx *c,
		    int (*fn)(void *arg, const char *stage, const char *key, const char *value),
		    void *arg);
int ferry_fact_setf(struct ferry_ctx *c, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* One log line: "ts level stage msg k=v ...". kvfmt is printf-style key=value text or NULL. */
void ferry_log(const struct ferry_ctx *c, enum ferry_level lv, const char *msg,
	       const char *kvfmt, ...) __attribute__((format(printf, 4, 5)));
/* Record the stage's error (the first one wins); returns rc. No trailing newline. */
int ferry_fail(struct ferry_ctx *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Stage-private pointer, kept from run to undo/cleanup. NULL at the start of a run. */
void **ferry_priv(struct ferry_ctx *c);

const char *ferry_stage_name(const struct ferry_ctx *c);  /* the [stage NAME] */
const char *ferry_state_dir(const struct ferry_ctx *c);   /* [pipeline] state_dir */
const char *ferry_config_file(const struct ferry_ctx *c); /* path of the INI, or NULL */
/* True when the run is the whole pipeline; false for `ferry run STAGE...` or --from
 * (a rerun by hand: e.g. pull refuses there to drop unpushed local changes). */
bool ferry_run_whole(const struct ferry_ctx *c);

/* Cooperative cancellation: true once SIGINT/SIGTERM arrived or the pipeline's
 * deadline passed. Long waits poll this (or ferry_cancel_fd) at least every 100 ms. */
bool ferry_cancelled(const struct ferry_ctx *c);
int ferry_cancel_fd(const struct ferry_ctx *c);            /* readable once a signal came */
int64_t ferry_deadline_left_ms(const struct ferry_ctx *c); /* INT64_MAX when no deadline */

/* The process-wide S3 client built from [s3] and the AWS_* environment, opened on
 * first use; NULL with the reason set via ferry_fail when it cannot be opened. */
struct ferry_s3 *ferry_s3(struct ferry_ctx *c);
/* The same client and the object key (malloc'd, in *key) behind a file on a ferryfs mount,
 * for reading the store directly; NULL (nothing recorded) when path is not on ferryfs or
 * [s3] does not address the mount's bucket. */
struct ferry_s3 *ferry_s3_for_mount(struct ferry_ctx *c, const char *path, char **key);

#endif
