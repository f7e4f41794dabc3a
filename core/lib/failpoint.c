/* failpoint.c: named fault points for tests; one getenv per process when unset. */
#include "ferry_failpoint.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferry_log.h"

bool ferry_failpoint(const char *name)
{
	static const char *spec;
	static int loaded;
	const char *p;
	size_t nl = strlen(name);

	if (!loaded) {
		spec = getenv("FERRY_FAILPOINT");
		loaded = 1;
	}
	if (!spec || !*spec)
		return false;
	for (p = spec; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *act;

		if (len < nl || strncmp(p, name, nl) != 0 || (len > nl && p[nl] != ':'))
			continue;
		act = len > nl ? p + nl + 1 : "fail";
		ferry_logf(FERRY_WARN, "failpoint", "hit", "name=%s action=%.*s", name,
			   (int)(len - (len > nl ? nl + 1 : 0)), len > nl ? act : "fail");
		if (strncmp(act, "kill", 4) == 0) {
			kill(getpid(), SIGKILL);
			pause();
		}
		if (strncmp(act, "exit", 4) == 0)
			_exit(99);
		if (strncmp(act, "sleep=", 6) == 0) {
			long ms = strtol(act + 6, NULL, 10);
			struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

			nanosleep(&ts, NULL);
			return false;
		}
		return true;
	}
	return false;
}
