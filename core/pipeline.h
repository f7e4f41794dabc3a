/* pipeline.h: build a run from the config, then run it and unwind it like a stack. */
#ifndef FERRY_PIPELINE_H
#define FERRY_PIPELINE_H

#include <stdbool.h>
#include "run.h"

struct pipeline_opts {
	bool dry_run;                       /* call dry_run() only; write nothing */
	const char *from;                   /* --from STAGE, or NULL */
	char **only;                        /* stage names given on the command line */
	int n_only;
	bool exact;                         /* --exact: no stage brought in for what they need */
	bool check_all;                     /* `ferry check`: report every problem, not the first */
};

/* Stages from the config, selection, plugins loaded, keys validated, check() called.
 * Returns 0 or FERRY_USAGE (already logged). cfg stays owned by the caller. */
int pipeline_prepare(struct run *r, struct config *cfg, const char *config_path,
		     const struct pipeline_opts *o);
/* Run the selected stages and unwind; returns ferry's exit code. */
int pipeline_run(struct run *r);
/* Free the stage contexts pipeline_prepare made, then the run (run_release). */
void pipeline_release(struct run *r);

#endif
