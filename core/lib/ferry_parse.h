/* ferry_parse.h: the one parser for each kind of configuration value (INI keys, -o
 * overrides, ferryfs -o options, tools): 0, or -1 on a bad value. */
#ifndef FERRY_PARSE_H
#define FERRY_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* Durations "250ms", "30s", "5m", "1h30m", "2d"; a bare number is seconds. */
int ferry_parse_duration_ms(const char *s, uint64_t *ms);
/* Sizes: a number, whole or with a fraction ("1.5"), then a unit, any case: none or
 * "B" (bytes); "K", "KiB", "M", "MiB", "G", "GiB", "T", "TiB" (powers of 1024);
 * "KB", "MB", "GB", "TB" (powers of 1000). "64KiB", "8m", "1.5g", "1GB". A fraction is
 * rounded down to whole bytes. */
int ferry_parse_size(const char *s, uint64_t *bytes);
/* Booleans true/false, yes/no, on/off, 1/0 (any case). */
int ferry_parse_bool(const char *s, bool *b);
/* Decimal integers, may be negative; no blanks. */
int ferry_parse_int(const char *s, int64_t *v);

#endif
