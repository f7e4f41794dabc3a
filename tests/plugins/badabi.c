/* badabi.c: a test plugin built for a future stage ABI; ferry must refuse it. */
#include "ferry_stage.h"

static int noop(struct ferry_ctx *c)
{
	(void)c;
	return FERRY_OK;
}

static const struct ferry_key keys[] = { { NULL, 0, NULL, 0, NULL } };

__attribute__((visibility("default"))) const struct ferry_stage ferry_stage_v1 = {
	.abi = 99, .size = sizeof(struct ferry_stage), .name = "badabi",
	.check = noop, .dry_run = noop, .run = noop, .undo = noop, .cleanup = noop, .keys = keys,
};
