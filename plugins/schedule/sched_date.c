/* sched_date.c: calendar arithmetic on day numbers (proleptic Gregorian), date parsing, FNV-1a. */
#include "sched_core.h"

#include <stdio.h>

bool sched_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int sched_mdays(int y, int m)
{
	static const int md[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	if (m == 2 && sched_leap(y))
		return 29;
	return md[m - 1];
}

/* H. Hinnant's days_from_civil: exact for every proleptic Gregorian date. */
int32_t sched_days(int y, int m, int d)
{
	y -= m <= 2;
	int era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153u * (unsigned)(m > 2 ? m - 3 : m + 9) + 2) / 5 + (unsigned)d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return (int32_t)(era * 146097 + (int)doe - 719468);
}

void sched_civil(int32_t n, int *y, int *m, int *d)
{
	int z = n + 719468;
	int era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	int mm = (int)(mp < 10 ? mp + 3 : mp - 9);

	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = mm;
	*y = (int)yoe + era * 400 + (mm <= 2);
}

int sched_year(int32_t n)
{
	/* estimate, then correct by at most one year either way */
	int y = 1970 + (int)((int64_t)n * 400 / 146097);

	while (sched_days(y, 1, 1) > n)
		y--;
	while (sched_days(y + 1, 1, 1) <= n)
		y++;
	return y;
}

int32_t sched_anniv(int y, int m, int d)
{
	if (m == 2 && d == 29 && !sched_leap(y))
		d = 28;
	return sched_days(y, m, d);
}

int32_t sched_next_anniv(int32_t ref, int m, int d)
{
	int y = sched_year(ref);
	int32_t a = sched_anniv(y, m, d);

	return a >= ref ? a : sched_anniv(y + 1, m, d);
}

static int digits(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

bool sched_parse_ymd(const char *s, size_t len, int32_t *out)
{
	if (len != 10 || s[4] != '-' || s[7] != '-')
		return false;
	int y = digits(s, 4), m = digits(s + 5, 2), d = digits(s + 8, 2);
	if (y < 1800 || y > 2200 || m < 1 || m > 12 || d < 1 || d > sched_mdays(y, m))
		return false;
	*out = sched_days(y, m, d);
	return true;
}

int sched_parse_value_date(const char *s, size_t len, int32_t *out)
{
	sched_trim(&s, &len);
	if (len == 0)
		return 0;
	if (len < 10 || (len > 10 && s[10] != 'T' && s[10] != ' '))
		return -1;
	return sched_parse_ymd(s, 10, out) ? 1 : -1;
}

void sched_fmt_date(int32_t n, char out[11])
{
	int y, m, d;

	sched_civil(n, &y, &m, &d);
	out[0] = (char)('0' + y / 1000 % 10);
	out[1] = (char)('0' + y / 100 % 10);
	out[2] = (char)('0' + y / 10 % 10);
	out[3] = (char)('0' + y % 10);
	out[4] = '-';
	out[5] = (char)('0' + m / 10);
	out[6] = (char)('0' + m % 10);
	out[7] = '-';
	out[8] = (char)('0' + d / 10);
	out[9] = (char)('0' + d % 10);
	out[10] = '\0';
}

char *sched_put_int(char *p, int64_t v)
{
	char tmp[24];
	int n = 0;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	if (v < 0)
		*p++ = '-';
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	while (n)
		*p++ = tmp[--n];
	return p;
}

uint32_t sched_fnv1a32(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}
