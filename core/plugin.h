/* plugin.h: loading stage plugins (dlopen, ABI check); supervisor-internal. */
#ifndef FERRY_PLUGIN_H
#define FERRY_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include "ferry_stage.h"

/* The directory plugins are loaded from: [pipeline] plugin_dir, else $FERRY_PLUGIN_DIR,
 * else plugins/ next to the ferry binary (build tree), else ../lib/ferry next to it,
 * else the compiled-in $(PREFIX)/lib/ferry. */
const char *plugin_dir(const char *configured);
/* Load plugin `name` from dir; NULL with the reason in err. Loaded plugins stay loaded
 * (and are shared by stages) until plugin_unload_all(). */
const struct ferry_stage *plugin_load(const char *dir, const char *name, char *err,
				      size_t errlen);
void plugin_unload_all(void);

/* What a descriptor declares (ferry_stage.h: needs, provides, ends, summary); NULL
 * or "" when it declares nothing (an older, shorter descriptor included). */
enum plugin_res { PLUGIN_NEEDS, PLUGIN_PROVIDES, PLUGIN_ENDS, PLUGIN_SUMMARY };
const char *plugin_res(const struct ferry_stage *d, enum plugin_res which);
/* The plugins (NAME of NAME.so) in dir, sorted; *n of them (NULL, 0 if none). */
char **plugin_list(const char *dir, size_t *n);
void plugin_list_free(char **names, size_t n);
/* Does the space-separated word list `words` hold `word`? */
bool plugin_word_in(const char *words, const char *word);

#endif
