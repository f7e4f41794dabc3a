/* exec_split.c: split a command line into argv, shell-style quoting, no expansion. */
#include "exec_split.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void exec_argv_free(char **argv)
{
	size_t i;

	for (i = 0; argv && argv[i]; i++)
		free(argv[i]);
	free(argv);
}

/* Words are separated by blanks; '...' is literal; "..." honours \" \\ \$ \`; a backslash
 * outside quotes takes the next character literally. Nothing is expanded: $VAR, $(...),
 * globs and ; | & reach the program as plain text. */
char **exec_split(const char *line, char *err, size_t errlen)
{
	size_t cap = 8, n = 0, len = strlen(line);
	char **argv = calloc(cap, sizeof(char *));
	char *word = malloc(len + 1);
	const char *p = line;

	if (!argv || !word)
		abort();
	for (;;) {
		size_t w = 0;
		int in_word = 0;

		while (*p == ' ' || *p == '\t' || *p == '\n')
			p++;
		if (!*p)
			break;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
			in_word = 1;
			if (*p == '\'') {
				const char *end = strchr(p + 1, '\'');

				if (!end) {
					snprintf(err, errlen, "unterminated single quote in command line");
					goto fail;
				}
				memcpy(word + w, p + 1, (size_t)(end - p - 1));
				w += (size_t)(end - p - 1);
				p = end + 1;
			} else if (*p == '"') {
				p++;
				while (*p && *p != '"') {
					if (*p == '\\' && p[1] && strchr("\"\\$`", p[1]))
						p++;
					word[w++] = *p++;
				}
				if (*p != '"') {
					snprintf(err, errlen, "unterminated double quote in command line");
					goto fail;
				}
				p++;
			} else if (*p == '\\') {
				if (!p[1]) {
					snprintf(err, errlen, "command line ends with a backslash");
					goto fail;
				}
				word[w++] = p[1];
				p += 2;
			} else {
				word[w++] = *p++;
			}
		}
		if (in_word) {
			if (n + 2 > cap) {
				cap *= 2;
				argv = realloc(argv, cap * sizeof(char *));
				if (!argv)
					abort();
			}
			argv[n] = malloc(w + 1);
			if (!argv[n])
				abort();
			memcpy(argv[n], word, w);
			argv[n][w] = '\0';
			argv[++n] = NULL;
		}
	}
	free(word);
	if (n == 0) {
		snprintf(err, errlen, "empty command line");
		exec_argv_free(argv);
		return NULL;
	}
	return argv;
fail:
	free(word);
	exec_argv_free(argv);
	return NULL;
}
