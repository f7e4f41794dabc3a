/* ferry_log.h: the one logging module (plain or JSON lines on stderr, secrets masked). */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include "ferry_stage.h"

enum ferry_log_format { FERRY_LOG_PLAIN, FERRY_LOG_JSON };

void ferry_log_setup(enum ferry_level min, enum ferry_log_format fmt);
enum ferry_level ferry_log_level(void);
/* Register a secret: any occurrence in any later log line is replaced by "***".
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_ACCESS_KEY_ID are added by setup. */
void ferry_log_add_secret(const char *secret);
/* Mask every registered secret in buf (in place). */
void ferry_log_mask(char *buf);

/* Log without a stage context (libferry, ferryfs): "ts level WHO msg k=v ...".
 * kvfmt is a printf template of space-separated KEY=VALUE pairs ("path='%s' n=%d"); each
 * value is cut out of the template (quotes around it there mark it as text) and quoted
 * here, once: logfmt in plain lines (key="a b", with \" and \\ inside), and in JSON lines
 * a string, or a number when the value is a plain decimal number and was not quoted. */
void ferry_logf(enum ferry_level lv, const char *who, const char *msg, const char *kvfmt, ...)
	__attribute__((format(printf, 4, 5)));
void ferry_vlogf(enum ferry_level lv, const char *who, const char *msg, const char *kvfmt,
		 va_list ap);

/* Text for a human on stderr (tables, progress), masked like log lines; dropped in
 * JSON mode and with -q, where the same facts go out as log lines. */
void ferry_log_text(const char *text);
enum ferry_log_format ferry_log_format(void);
/* A line redrawn in place (a progress bar) may go to stderr: it is a terminal, the format
 * is plain and info lines are shown. Otherwise long work logs progress lines instead. */
bool ferry_log_live(void);
/* Milliseconds between two progress log lines of one long step: 10000, or
 * FERRY_PROGRESS_INTERVAL_MS from the environment (tests set it low; 0: every update). */
int64_t ferry_log_progress_ms(void);

#endif
