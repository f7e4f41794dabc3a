/* test_push.c: the push stage's remembered part costs (push_cost.c): what the upload is
 * given, when the copy figure is held back to be timed again, and how figures are kept.
 * The file and the wire: tests/integration/t3010-push-costs.sh. */
#include "push_cost.h"
#include "unit.h"

#define DAY 86400LL
#define NOW (1800000000LL)

/* What the upload is given, by the age of the copy figure and the pushes that went by it. */
static void test_decide(void)
{
	struct push_costs pc = { .copy_ms_per_mib = 300, .upload_ms_per_mib = 20,
				 .copy_at = NOW - DAY };

	push_costs_decide(&pc, NOW);
	ASSERT_TRUE(!pc.recheck);
	ASSERT_TRUE(pc.prior.copy_ms_per_mib == 300 && pc.prior.upload_ms_per_mib == 20);
	ASSERT_TRUE(pc.copy_age_days == 1.0);
	/* too many pushes on its word: held back, the upload figure still given */
	pc.copy_pushes = PUSH_COST_RECHECK_PUSHES;
	push_costs_decide(&pc, NOW);
	ASSERT_TRUE(pc.recheck);
	ASSERT_TRUE(pc.prior.copy_ms_per_mib == 0 && pc.prior.upload_ms_per_mib == 20);
	pc.copy_pushes = PUSH_COST_RECHECK_PUSHES - 1;
	push_costs_decide(&pc, NOW);
	ASSERT_TRUE(!pc.recheck);
	/* too old; no time at all; a time more than a day ahead of the clock */
	pc.copy_at = NOW - PUSH_COST_RECHECK_DAYS * DAY;
	push_costs_decide(&pc, NOW);
	ASSERT_TRUE(pc.recheck && pc.prior.copy_ms_per_mib == 0);
	pc.copy_at = NOW - PUSH_COST_RECHECK_DAYS * DAY + 1;
	push_costs_decide(&pc, NOW);
	ASSERT_TRUE(!pc.recheck && pc.prior.copy_ms_per_mib == 300);
	pc.copy_at = 0;
	push_costs_decide(&pc, NOW);
	ASSERT_TRUE(pc.recheck);
	pc.copy_at = NOW + 2 * DAY;
	push_costs_decide(&pc, NOW);
	ASSERT_TRUE(pc.recheck);
	pc.copy_at = NOW + 60;                      /* a clock a minute behind: fine */
	push_costs_decide(&pc, NOW);
	ASSERT_TRUE(!pc.recheck && pc.copy_age_days == 0);
	/* no copy figure: nothing to hold back */
	pc = (struct push_costs){ .upload_ms_per_mib = 20 };
	push_costs_decide(&pc, NOW);
	ASSERT_TRUE(!pc.recheck && pc.prior.copy_ms_per_mib == 0 && pc.prior.upload_ms_per_mib == 20);
}

/* What one upload's figures do to the kept ones. */
static void test_update(void)
{
	struct push_costs pc = { 0 };
	struct ferry_s3_up_costs m = { .copy_ms_per_mib = 400, .upload_ms_per_mib = 20 };

	/* the first figures are taken as they are */
	push_costs_decide(&pc, NOW);
	ASSERT_TRUE(push_costs_update(&pc, &m, 0, NOW));
	ASSERT_TRUE(pc.dirty);
	ASSERT_TRUE(pc.copy_ms_per_mib == 400 && pc.upload_ms_per_mib == 20);
	ASSERT_EQ(pc.copy_at, NOW);
	/* then averaged half and half */
	m = (struct ferry_s3_up_costs){ .copy_ms_per_mib = 200, .upload_ms_per_mib = 10 };
	push_costs_decide(&pc, NOW + 10);
	ASSERT_TRUE(push_costs_update(&pc, &m, 0, NOW + 10));
	ASSERT_TRUE(pc.copy_ms_per_mib == 300 && pc.upload_ms_per_mib == 15);
	ASSERT_EQ(pc.copy_at, NOW + 10);
	/* a push that uploaded its copyable parts on the kept copy figure alone: counted, the
	 * copy figure and its time unchanged, the upload figure averaged */
	m = (struct ferry_s3_up_costs){ .upload_ms_per_mib = 25 };
	push_costs_decide(&pc, NOW + DAY);
	ASSERT_TRUE(push_costs_update(&pc, &m, 3, NOW + DAY));
	ASSERT_EQ(pc.copy_pushes, 1);
	ASSERT_TRUE(pc.copy_ms_per_mib == 300 && pc.upload_ms_per_mib == 20);
	ASSERT_EQ(pc.copy_at, NOW + 10);
	/* one whose copyable parts were uploaded on its own timings is not counted */
	push_costs_decide(&pc, NOW + DAY);
	push_costs_update(&pc, &m, 0, NOW + DAY);
	ASSERT_EQ(pc.copy_pushes, 1);
	/* a copy timed: the count starts again */
	m = (struct ferry_s3_up_costs){ .copy_ms_per_mib = 100 };
	push_costs_decide(&pc, NOW + DAY);
	push_costs_update(&pc, &m, 0, NOW + DAY);
	ASSERT_EQ(pc.copy_pushes, 0);
	ASSERT_TRUE(pc.copy_ms_per_mib == 200);
	/* held back and timed again: the new figure replaces the stale one */
	pc.copy_pushes = PUSH_COST_RECHECK_PUSHES;
	push_costs_decide(&pc, NOW + 2 * DAY);
	ASSERT_TRUE(pc.recheck);
	m = (struct ferry_s3_up_costs){ .copy_ms_per_mib = 8, .upload_ms_per_mib = 20 };
	push_costs_update(&pc, &m, 0, NOW + 2 * DAY);
	ASSERT_TRUE(pc.copy_ms_per_mib == 8 && !pc.recheck);
	ASSERT_EQ(pc.copy_pushes, 0);
	ASSERT_EQ(pc.copy_at, NOW + 2 * DAY);
	/* held back, and no copy this time (nothing to copy): still to be timed, not counted */
	pc.copy_pushes = PUSH_COST_RECHECK_PUSHES;
	push_costs_decide(&pc, NOW + 3 * DAY);
	m = (struct ferry_s3_up_costs){ .upload_ms_per_mib = 20 };
	push_costs_update(&pc, &m, 2, NOW + 3 * DAY);
	ASSERT_EQ(pc.copy_pushes, PUSH_COST_RECHECK_PUSHES);
	/* nothing measured (one PUT): nothing to save */
	pc.dirty = false;
	m = (struct ferry_s3_up_costs){ 0 };
	ASSERT_TRUE(!push_costs_update(&pc, &m, 0, NOW + 3 * DAY));
	ASSERT_TRUE(!pc.dirty);
}

int main(void)
{
	test_decide();
	test_update();
	return UNIT_DONE();
}
