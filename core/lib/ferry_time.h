/* ferry_time.h: the clocks ferry reads, each in milliseconds, in one place. */
#ifndef FERRY_TIME_H
#define FERRY_TIME_H

#include <stdint.h>

/* CLOCK_REALTIME: timestamps that leave the process (journal, lock bodies, log lines). */
int64_t ferry_now_ms(void);
/* CLOCK_MONOTONIC: durations, deadlines, the ms= of log lines, progress rates. */
int64_t ferry_mono_ms(void);
/* CLOCK_MONOTONIC in nanoseconds, for what takes microseconds (a cached read). */
uint64_t ferry_mono_ns(void);
/* CLOCK_BOOTTIME: lock leases, which must keep counting while the machine is suspended. */
int64_t ferry_boot_ms(void);

#endif
