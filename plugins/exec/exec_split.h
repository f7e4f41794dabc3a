/* exec_split.h: shell-style word splitting for the exec stage (no expansion, no shell). */
#ifndef FERRY_EXEC_SPLIT_H
#define FERRY_EXEC_SPLIT_H

#include <stddef.h>

/* NULL-terminated malloc'd argv, or NULL with a reason in err. */
char **exec_split(const char *line, char *err, size_t errlen);
void exec_argv_free(char **argv);

#endif
