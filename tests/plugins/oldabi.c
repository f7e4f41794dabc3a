/* oldabi.c: a test plugin with an ABI 2 descriptor from before needs/provides/ends were
 * appended (FERRY_STAGE_MIN_SIZE bytes); ferry must load it as declaring none of them. */
#include "ferry_ctx.h"
#include "ferry_stage.h"

static int noop(struct ferry_ctx *c)
{
	(void)c;
	return FERRY_OK;
}

static int say(struct ferry_ctx *c)
{
	ferry_log(c, FERRY_INFO, "oldabi ran", NULL);
	return FERRY_OK;
}

static const struct ferry_key keys[] = { { NULL, 0, NULL, 0, NULL, NULL } };

__attribute__((visibility("default"))) const struct ferry_stage ferry_stage_v1 = {
	.abi = FERRY_STAGE_ABI, .size = FERRY_STAGE_MIN_SIZE, .name = "oldabi",
	.check = noop, .dry_run = noop, .run = say, .undo = noop, .cleanup = noop, .keys = keys,
};
