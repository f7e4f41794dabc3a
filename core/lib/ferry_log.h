/* ferry_log.h: the one logging module (plain or JSON lines on stderr, secrets masked). */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#include <stdarg.h>
#include "ferry_stage.h"

enum ferry_log_format { FERRY_LOG_PLAIN, FERRY_LOG_JSON };

void ferry_log_setup(enum ferry_level min, enum ferry_log_format fmt);
enum ferry_level ferry_log_level(void);
/* Register a secret: any occurrence in any later log line is replaced by "***".
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_ACCESS_KEY_ID are added by setup. */
void ferry_log_add_secret(const char *secret);
/* Mask every registered secret in buf (in place). */
void ferry_log_mask(char *buf);

/* Log without a stage context (libferry, ferryfs): "ts level WHO msg k=v ...". */
void ferry_logf(enum ferry_level lv, const char *who, const char *msg, const char *kvfmt, ...)
	__attribute__((format(printf, 4, 5)));
void ferry_vlogf(enum ferry_level lv, const char *who, const char *msg, const char *kvfmt,
		 va_list ap);

/* Text for a human on stderr (tables, progress), masked like log lines; dropped in
 * JSON mode and with -q, where the same facts go out as log lines. */
void ferry_log_text(const char *text);
enum ferry_log_format ferry_log_format(void);

#endif
