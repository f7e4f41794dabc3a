/* ferry_failpoint.h: named fault points for tests (FERRY_FAILPOINT=name[:action],...). */
#ifndef FERRY_FAILPOINT_H
#define FERRY_FAILPOINT_H

#include <stdbool.h>

/* FERRY_FAILPOINT holds a comma-separated list of NAME[:ACTION], ACTION one of
 *   fail      (default) ferry_failpoint() returns true: the caller fails its step
 *   kill      the process SIGKILLs itself on the spot
 *   exit      _exit(99)
 *   sleep=MS  sleep MS milliseconds, then continue (returns false)
 * NAME is "stage.point" (e.g. "push.after_part_3"). When the variable is unset this
 * costs one predictable branch. */
bool ferry_failpoint(const char *name);

#endif
