/* fuzz_ini.c: the pipeline INI parser with variable expansion, overrides and key checks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cfg.h"

static const struct ferry_key keys[] = {
	{ "ttl", FERRY_KEY_DURATION, "1h", 0, "t" },
	{ "size", FERRY_KEY_SIZE, NULL, 0, "s" },
	{ "key", FERRY_KEY_STRING, NULL, FERRY_KEY_REQUIRED, "k" },
	{ "on", FERRY_KEY_BOOL, NULL, 0, "b" },
	{ "n", FERRY_KEY_INT, NULL, 0, "i" },
	{ "path", FERRY_KEY_PATH, NULL, 0, "p" },
	{ NULL, 0, NULL, 0, NULL },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64], err[2048];
	char *ov[] = { (char *)"a.ttl=${ORG_ID:-5}m", (char *)"pipeline.name=x${name}" };
	struct config *cfg = NULL;
	int fd = memfd_create("fuzz-ini", 0);
	size_t i;

	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	setenv("ORG_ID", "42", 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (cfg_load(&cfg, path, ov, (int)(size % 3), err, sizeof(err)) == 0) {
		for (i = 0; i < cfg->n; i++)
			if (cfg->s[i].kind == CFG_STAGE)
				cfg_check_keys(&cfg->s[i], keys, err, sizeof(err));
		cfg_free(cfg);
	} else if (!strstr(err, path) && !strstr(err, "-o ")) {
		abort();                    /* every error names the file or the override */
	}
	close(fd);
	return 0;
}
