/* ctx.h: the stage contexts of a run (the opaque struct ferry_ctx of ferry_ctx.h), as the
 * pipeline makes and reads them. Supervisor-internal. */
#ifndef FERRY_CTX_H_INTERNAL
#define FERRY_CTX_H_INTERNAL

struct ferry_ctx;
struct run;
struct stage_rt;

struct ferry_ctx *ctx_new(struct run *r, struct stage_rt *st);
void ctx_free(struct ferry_ctx *c);
const char *ctx_error(const struct ferry_ctx *c);   /* the first ferry_fail's message, or NULL */
int ctx_error_rc(const struct ferry_ctx *c);        /* its code, 0 if none */
void ctx_clear_error(struct ferry_ctx *c);

#endif
