/* test_abi.c: dlopen every built stage plugin and check its descriptor. */
#include <assert.h>
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "ferry_stage.h"

/* The descriptor's layout: appending fields is allowed, changing these is an ABI bump. */
/* Within ABI 2, needs/provides/ends/summary were appended (72 -> 104 bytes); a 72-byte
 * descriptor (FERRY_STAGE_MIN_SIZE) still loads and declares none of them. */
static_assert(sizeof(struct ferry_stage) == 104, "struct ferry_stage changed size");
static_assert(FERRY_STAGE_MIN_SIZE == 72, "the ABI 2 minimum descriptor changed");
static_assert(offsetof(struct ferry_stage, run) == 40, "struct ferry_stage changed layout");
static_assert(offsetof(struct ferry_stage, keys) == 64, "struct ferry_stage changed layout");
/* ABI 2 appended `choices` to struct ferry_key. */
static_assert(sizeof(struct ferry_key) == 48, "struct ferry_key changed size");
static_assert(offsetof(struct ferry_key, choices) == 40, "struct ferry_key changed layout");

/* Is w one of the '|'-separated words of list? */
static int has_word(const char *list, const char *w)
{
	size_t n = strlen(w);
	const char *p = list;

	for (;;) {
		const char *e = strchr(p, '|');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		if (len == n && memcmp(p, w, n) == 0)
			return 1;
		if (!e)
			return 0;
		p = e + 1;
	}
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "build/plugins";
	int checked = 0, failed = 0;
	struct dirent *de;
	DIR *d = opendir(dir);

	if (!d) {
		perror(dir);
		return 1;
	}
	while ((de = readdir(d)) != NULL) {
		char path[4096], stem[256];
		const struct ferry_stage *s;
		const struct ferry_key *k;
		size_t len = strlen(de->d_name);
		void *h;

		if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0)
			continue;
		snprintf(stem, sizeof(stem), "%.*s", (int)(len - 3), de->d_name);
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		checked++;
		h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (!h) {
			fprintf(stderr, "FAIL %s: %s\n", path, dlerror());
			failed++;
			continue;
		}
		s = dlsym(h, "ferry_stage_v1");
		if (!s || s->abi != FERRY_STAGE_ABI || s->size != sizeof(*s) || !s->name ||
		    strcmp(s->name, stem) != 0 || !s->run || !s->check || !s->dry_run || !s->keys) {
			fprintf(stderr, "FAIL %s: bad descriptor (abi, size, name, run/check/dry_run, keys)\n",
				path);
			failed++;
		} else {
			for (k = s->keys; k->name; k++) {
				if (k->type > FERRY_KEY_TYPE_LAST || !k->help) {
					fprintf(stderr, "FAIL %s: key '%s' has a bad type or no help\n", path,
						k->name);
					failed++;
				}
				/* a choice key lists its words, and its default is one of them */
				if ((k->type == FERRY_KEY_ENUM) != (k->choices != NULL) ||
				    (k->choices && k->def && !has_word(k->choices, k->def))) {
					fprintf(stderr, "FAIL %s: key '%s': choices and type disagree\n",
						path, k->name);
					failed++;
				}
			}
			/* the version script exports the descriptor and nothing else */
			if (dlsym(h, "exec_split") || dlsym(h, "main")) {
				fprintf(stderr, "FAIL %s: exports more than ferry_stage_v1\n", path);
				failed++;
			}
			printf("ok   %-12s abi=%u size=%zu\n", s->name, s->abi, s->size);
		}
		dlclose(h);
	}
	closedir(d);
	printf("test_abi: %d plugins, %d failed\n", checked, failed);
	return checked == 0 || failed ? 1 : 0;
}
