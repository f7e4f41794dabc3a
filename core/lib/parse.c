/* parse.c: value parsers for durations, sizes, booleans and integers (ferry_parse.h). */
#include "ferry_parse.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int ferry_parse_int(const char *s, int64_t *v)
{
	char *end;
	long long x;

	if (!s || !*s || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	x = strtoll(s, &end, 10);
	if (errno || *end)
		return -1;
	*v = x;
	return 0;
}

int ferry_parse_bool(const char *s, bool *b)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	size_t i;

	for (i = 0; s && i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*b = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*b = false;
			return 0;
		}
	}
	return -1;
}

/* "250ms", "30s", "5m", "1h", "2d", "1h30m"; a bare number is seconds. */
int ferry_parse_duration_ms(const char *s, uint64_t *ms)
{
	uint64_t total = 0;
	const char *p = s;

	if (!s || !*s)
		return -1;
	while (*p) {
		uint64_t n = 0, mul;
		const char *start = p;

		while (isdigit((unsigned char)*p)) {
			if (n > UINT64_MAX / 10 - 10)
				return -1;
			n = n * 10 + (uint64_t)(*p++ - '0');
		}
		if (p == start)
			return -1;
		if (strncmp(p, "ms", 2) == 0) {
			mul = 1;
			p += 2;
		} else if (*p == 's') {
			mul = 1000;
			p++;
		} else if (*p == 'm') {
			mul = 60000;
			p++;
		} else if (*p == 'h') {
			mul = 3600000;
			p++;
		} else if (*p == 'd') {
			mul = 86400000;
			p++;
		} else if (*p == '\0' && start == s) {
			mul = 1000;             /* bare number: seconds */
		} else {
			return -1;
		}
		if (n > (UINT64_MAX - total) / mul)
			return -1;
		total += n * mul;
	}
	*ms = total;
	return 0;
}

/* Whole numbers are parsed exactly; a fraction goes through a double, exact for the
 * halves and quarters people write ("1.5g"), and is rounded down to whole bytes. */
int ferry_parse_size(const char *s, uint64_t *bytes)
{
	static const struct { const char *sfx; uint64_t mul; } units[] = {
		{ "", 1 }, { "B", 1 },
		{ "K", 1ULL << 10 }, { "KiB", 1ULL << 10 }, { "M", 1ULL << 20 }, { "MiB", 1ULL << 20 },
		{ "G", 1ULL << 30 }, { "GiB", 1ULL << 30 }, { "T", 1ULL << 40 }, { "TiB", 1ULL << 40 },
		{ "KB", 1000ULL }, { "MB", 1000000ULL }, { "GB", 1000000000ULL },
		{ "TB", 1000000000000ULL },
	};
	uint64_t n = 0, frac_num = 0, frac_den = 1;
	const char *p = s;
	size_t i;

	if (!s || !isdigit((unsigned char)*s))
		return -1;
	while (isdigit((unsigned char)*p)) {
		if (n > UINT64_MAX / 10 - 10)
			return -1;
		n = n * 10 + (uint64_t)(*p++ - '0');
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -1;
		while (isdigit((unsigned char)*p)) {
			if (frac_den < 1000000000000ULL) {
				frac_num = frac_num * 10 + (uint64_t)(*p - '0');
				frac_den *= 10;
			}
			p++;
		}
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		uint64_t mul = units[i].mul, whole;
		long double part;

		if (strcasecmp(p, units[i].sfx) != 0)
			continue;
		if (mul > 1 && n > UINT64_MAX / mul)
			return -1;
		whole = n * mul;
		part = floorl((long double)frac_num * (long double)mul / (long double)frac_den);
		if (part > (long double)(UINT64_MAX - whole))
			return -1;
		*bytes = whole + (uint64_t)part;
		return 0;
	}
	return -1;
}
