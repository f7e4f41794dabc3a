/* time.c: the clocks ferry reads (ferry_time.h). */
#include "ferry_time.h"

#include <time.h>

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ferry_now_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

int64_t ferry_mono_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

uint64_t ferry_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t ferry_boot_ms(void)
{
	return clock_ms(CLOCK_BOOTTIME);
}
