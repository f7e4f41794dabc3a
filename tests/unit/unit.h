/* unit.h: the tiny assertion kit of ferry's unit tests (one binary per module). */
#ifndef FERRY_UNIT_H
#define FERRY_UNIT_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unit_failures;
static int unit_checks;

#define UNIT_FAIL(...) do { \
	unit_failures++; \
	fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); \
	fputc('\n', stderr); \
} while (0)

#define ASSERT_TRUE(x) do { unit_checks++; if (!(x)) UNIT_FAIL("%s", #x); } while (0)
#define ASSERT_EQ(a, b) do { \
	long long unit_a_ = (long long)(a), unit_b_ = (long long)(b); \
	unit_checks++; \
	if (unit_a_ != unit_b_) \
		UNIT_FAIL("%s == %s: %lld != %lld", #a, #b, unit_a_, unit_b_); \
} while (0)
#define ASSERT_STREQ(a, b) do { \
	const char *unit_a_ = (a), *unit_b_ = (b); \
	unit_checks++; \
	if (!unit_a_ || !unit_b_ || strcmp(unit_a_, unit_b_) != 0) \
		UNIT_FAIL("%s == %s: '%s' != '%s'", #a, #b, unit_a_ ? unit_a_ : "(null)", \
			  unit_b_ ? unit_b_ : "(null)"); \
} while (0)
#define ASSERT_CONTAINS(hay, needle) do { \
	const char *unit_h_ = (hay), *unit_n_ = (needle); \
	unit_checks++; \
	if (!unit_h_ || !strstr(unit_h_, unit_n_)) \
		UNIT_FAIL("'%s' does not contain '%s'", unit_h_ ? unit_h_ : "(null)", unit_n_); \
} while (0)

/* End of main(): prints "test_x: N checks, N failed" and gives the exit status. */
#define UNIT_DONE() ( \
	fprintf(stderr, "%s: %d checks, %d failed\n", __FILE__, unit_checks, unit_failures), \
	(unit_checks == 0 || unit_failures) ? 1 : 0)

#endif
