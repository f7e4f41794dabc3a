/* push_cost.h: what part copies and part uploads cost on this store, as earlier pushes
 * measured them (push_cost.c; plugins/push/README.md, "Remembered part costs"). */
#ifndef PUSH_COST_H
#define PUSH_COST_H

#include <stdbool.h>
#include <stdint.h>

#include "ferry_s3.h"

struct ferry_ctx;

/* A copy figure is timed again (held back from the upload, which then probes with the
 * smallest part to copy) once this many pushes uploaded their copyable parts on its word
 * alone, or once it is this old: a store whose copies were slow may have become fast, and
 * a push that never copies never finds out. */
#define PUSH_COST_RECHECK_PUSHES 10
#define PUSH_COST_RECHECK_DAYS   7

struct push_costs {
	char path[4096];                    /* state_dir/push-costs-HASH.json; "": none */
	double copy_ms_per_mib;             /* kept figures; 0: none */
	double upload_ms_per_mib;
	int64_t copy_at;                    /* when the copy figure was last timed (unix s) */
	int copy_pushes;                    /* pushes since then that copied nothing on its word */
	bool recheck;                       /* the copy figure is held back: time copies again */
	bool dirty;                         /* changed since loaded */
	struct ferry_s3_up_costs prior;     /* what the upload is given (push_costs_decide) */
	double copy_age_days;               /* of the copy figure, for the log lines */
};

/* The kept figures (a missing file: none; an unreadable or corrupt one: none, with an info
 * line), then push_costs_decide. */
void push_costs_load(struct ferry_ctx *c, struct ferry_s3 *s3, struct push_costs *pc,
		     int64_t now_s);
/* The prior for ferry_s3_upload from the kept figures at now_s: both figures, or the upload
 * figure alone when the copy figure is due to be timed again (pc->recheck). */
void push_costs_decide(struct push_costs *pc, int64_t now_s);
/* Fold in what one upload measured: each figure averaged half and half with the kept one
 * (a copy figure timed again after being held back replaces it: it was stale), and a push
 * that uploaded copyable parts on the kept copy figure alone counted against it. Whether
 * anything changed. */
bool push_costs_update(struct push_costs *pc, const struct ferry_s3_up_costs *m,
		       int prior_uploads, int64_t now_s);
/* Written atomically (temp file, rename; no fsync: a lost file costs one probe). */
void push_costs_save(struct ferry_ctx *c, struct push_costs *pc);

#endif
