/* nosym.c: a test plugin without the ferry_stage_v1 descriptor; ferry must refuse it. */
int nosym_placeholder(void);

int nosym_placeholder(void)
{
	return 0;
}
