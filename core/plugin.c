/* plugin.c: dlopen stage plugins and check their descriptor before anything runs. */
#include "plugin.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PLUGINS 64

/* Loaded plugins of this process; supervisor-only, single-threaded. */
static struct {
	char *name;
	void *handle;
	const struct ferry_stage *desc;
} loaded[MAX_PLUGINS];
static int n_loaded;

static bool is_dir(const char *p)
{
	struct stat sb;

	return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

const char *plugin_dir(const char *configured)
{
	static char buf[PATH_MAX + 32];
	char exe[PATH_MAX];
	ssize_t n;
	char *slash;
	const char *env = getenv("FERRY_PLUGIN_DIR");

	if (configured && *configured)
		return configured;
	if (env && *env)
		return env;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			snprintf(buf, sizeof(buf), "%s/plugins", exe);
			if (is_dir(buf))
				return buf;
			snprintf(buf, sizeof(buf), "%s/../lib/ferry", exe);
			if (is_dir(buf))
				return buf;
		}
	}
	return FERRY_PLUGIN_DIR;
}

const struct ferry_stage *plugin_load(const char *dir, const char *name, char *err,
				      size_t errlen)
{
	char path[PATH_MAX];
	const struct ferry_stage *d;
	void *h;
	int i;

	for (i = 0; i < n_loaded; i++)
		if (strcmp(loaded[i].name, name) == 0)
			return loaded[i].desc;
	if (strchr(name, '/') || !*name) {
		snprintf(err, errlen, "bad plugin name '%s'", name);
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/%s.so", dir, name);
	if (access(path, F_OK) != 0) {
		snprintf(err, errlen, "plugin not found: '%s'", path);
		return NULL;
	}
	if (n_loaded == MAX_PLUGINS) {
		snprintf(err, errlen, "too many plugins (at most %d)", MAX_PLUGINS);
		return NULL;
	}
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(err, errlen, "cannot load plugin '%s': %s", path, dlerror());
		return NULL;
	}
	d = dlsym(h, "ferry_stage_v1");
	if (!d) {
		snprintf(err, errlen, "plugin '%s' exports no 'ferry_stage_v1' descriptor", path);
		goto out_close;
	}
	if (d->abi != FERRY_STAGE_ABI) {
		snprintf(err, errlen, "plugin '%s' was built for stage ABI %u, this ferry speaks ABI %d; "
			 "rebuild the plugin", path, d->abi, FERRY_STAGE_ABI);
		goto out_close;
	}
	if (d->size < FERRY_STAGE_MIN_SIZE) {
		/* the ABI grows by appending: needs/provides/ends may be missing (see
		 * plugin_needs()), everything before them is required */
		snprintf(err, errlen, "plugin '%s' has a descriptor of %zu bytes, expected at least "
			 "%zu; rebuild the plugin", path, d->size, (size_t)FERRY_STAGE_MIN_SIZE);
		goto out_close;
	}
	if (!d->name || strcmp(d->name, name) != 0) {
		snprintf(err, errlen, "plugin '%s' calls itself '%s', expected '%s'", path,
			 d->name ? d->name : "(null)", name);
		goto out_close;
	}
	if (!d->run) {
		snprintf(err, errlen, "plugin '%s' has no run callback", path);
		goto out_close;
	}
	loaded[n_loaded].name = strdup(name);
	loaded[n_loaded].handle = h;
	loaded[n_loaded].desc = d;
	n_loaded++;
	return d;
out_close:
	dlclose(h);
	return NULL;
}

void plugin_unload_all(void)
{
	int i;

	for (i = 0; i < n_loaded; i++) {
		dlclose(loaded[i].handle);
		free(loaded[i].name);
	}
	n_loaded = 0;
}

const char *plugin_res(const struct ferry_stage *d, enum plugin_res which)
{
	if (!d || d->size < sizeof(struct ferry_stage))
		return NULL;
	switch (which) {
	case PLUGIN_NEEDS: return d->needs;
	case PLUGIN_PROVIDES: return d->provides;
	case PLUGIN_ENDS: return d->ends;
	case PLUGIN_SUMMARY: return d->summary;
	}
	return NULL;
}

bool plugin_word_in(const char *words, const char *word)
{
	size_t n = strlen(word);
	const char *p = words;

	while (p && *p) {
		while (*p == ' ')
			p++;
		if (strncmp(p, word, n) == 0 && (p[n] == ' ' || p[n] == '\0'))
			return true;
		p = strchr(p, ' ');
	}
	return false;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

char **plugin_list(const char *dir, size_t *n)
{
	char **v = NULL;
	struct dirent *de;
	DIR *d = opendir(dir);

	*n = 0;
	if (!d)
		return NULL;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		char **nv;

		if (len < 4 || strcmp(de->d_name + len - 3, ".so") != 0)
			continue;
		nv = realloc(v, (*n + 1) * sizeof(*v));
		if (!nv)
			abort();
		v = nv;
		v[*n] = strndup(de->d_name, len - 3);
		if (!v[*n])
			abort();
		(*n)++;
	}
	closedir(d);
	if (*n)
		qsort(v, *n, sizeof(*v), cmp_str);
	return v;
}

void plugin_list_free(char **names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}
