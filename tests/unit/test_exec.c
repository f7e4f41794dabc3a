/* test_exec.c: the exec stage's word splitting: quoting, no expansion, bad lines. */
#include "exec_split.h"
#include "unit.h"

static void split_is(const char *line, const char *const *want)
{
	char err[128];
	char **argv = exec_split(line, err, sizeof(err));
	size_t i;

	ASSERT_TRUE(argv != NULL);
	if (!argv)
		return;
	for (i = 0; want[i]; i++)
		ASSERT_STREQ(argv[i], want[i]);
	ASSERT_TRUE(argv[i] == NULL);
	exec_argv_free(argv);
}

int main(void)
{
	char err[128];

	split_is("echo hello  world", (const char *const[]){ "echo", "hello", "world", NULL });
	split_is("  sh -c 'echo $HOME; rm -rf /'", (const char *const[]){ "sh", "-c", "echo $HOME; rm -rf /", NULL });
	split_is("printf \"%s\\n\" \"a \\\"b\\\" c\"", (const char *const[]){ "printf", "%s\\n", "a \"b\" c", NULL });
	split_is("a\\ b c'd'\"e\"", (const char *const[]){ "a b", "cde", NULL });
	split_is("echo $(id) `id` ; | &", (const char *const[]){ "echo", "$(id)", "`id`", ";", "|", "&", NULL });
	split_is("x ''", (const char *const[]){ "x", "", NULL });
	ASSERT_TRUE(exec_split("echo 'open", err, sizeof(err)) == NULL);
	ASSERT_CONTAINS(err, "unterminated single quote");
	ASSERT_TRUE(exec_split("echo \"open", err, sizeof(err)) == NULL);
	ASSERT_CONTAINS(err, "unterminated double quote");
	ASSERT_TRUE(exec_split("   ", err, sizeof(err)) == NULL);
	ASSERT_CONTAINS(err, "empty command line");
	ASSERT_TRUE(exec_split("x \\", err, sizeof(err)) == NULL);
	ASSERT_CONTAINS(err, "backslash");
	return UNIT_DONE();
}
