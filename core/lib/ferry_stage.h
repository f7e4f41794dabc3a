/* ferry_stage.h: the contract between the ferry supervisor and its stage plugins. */
#ifndef FERRY_STAGE_H
#define FERRY_STAGE_H

#include <stddef.h>

#define FERRY_STAGE_ABI 2                   /* bump on any incompatible change (2: struct
					     * ferry_key grew `choices`) */
#define FERRY_EXPORT    __attribute__((visibility("default")))

/* Return codes of stage callbacks; they are also ferry's exit codes. */
enum ferry_rc {
	FERRY_OK = 0,
	FERRY_FAIL = 1,                     /* the stage failed; the run is unwound */
	FERRY_USAGE = 2,                    /* usage or configuration error */
	FERRY_NOLOCK = 3,                   /* lock not acquired within max_wait */
	FERRY_FENCED = 4,                   /* someone else's data or lock is newer */
};

enum ferry_level { FERRY_DEBUG, FERRY_INFO, FERRY_WARN, FERRY_ERROR };

/* Types of configuration keys a stage declares; the supervisor validates them
 * (file:line, exit 2) before anything runs, so run() can trust the accessors. */
enum ferry_key_type {
	FERRY_KEY_STRING,                   /* any text */
	FERRY_KEY_PATH,                     /* a path; relative ones resolve against the INI's dir;
					     * '..' only as leading segments */
	FERRY_KEY_BOOL,                     /* true/false, yes/no, on/off, 1/0 */
	FERRY_KEY_INT,                      /* decimal integer, may be negative */
	FERRY_KEY_DURATION,                 /* 250ms, 30s, 5m, 1h, 2d; a bare number is seconds */
	FERRY_KEY_SIZE,                     /* 512, 64KiB, 8MiB, 1GiB, 1MB (decimal) */
	FERRY_KEY_OBJKEY,                   /* S3 key or prefix inside the bucket: no leading '/',
					     * no '', '.' or '..' segment (added within ABI 1:
					     * an older supervisor reports "unknown key type") */
	FERRY_KEY_ENUM,                     /* one of the words of `choices` ("quick|full|none") */
};
#define FERRY_KEY_TYPE_LAST FERRY_KEY_ENUM

#define FERRY_KEY_REQUIRED 0x1u             /* the key must be set (by INI or -o) */
#define FERRY_KEY_SECRET   0x2u             /* never echo the value (logs, dry-run, errors) */

struct ferry_key {
	const char *name;                   /* key name in [stage NAME]; NULL ends the table */
	enum ferry_key_type type;           /* how the value is validated */
	const char *def;                    /* default value as text, or NULL for none */
	unsigned int flags;                 /* FERRY_KEY_* */
	const char *help;                   /* one line for `ferry list -v` and the README */
	const char *choices;                /* FERRY_KEY_ENUM: the allowed words, '|'-separated */
};

struct ferry_ctx;                           /* opaque; one per stage per run */

struct ferry_stage {
	unsigned int abi;                   /* FERRY_STAGE_ABI at build time */
	size_t size;                        /* sizeof(struct ferry_stage) at build time */
	const char *name;                   /* "lock", "mount", ... (the plugin's name) */
	int (*check)(struct ferry_ctx *c);  /* validate config section, no side effects */
	int (*dry_run)(struct ferry_ctx *c);/* say what run would do, change nothing */
	int (*run)(struct ferry_ctx *c);    /* FERRY_OK or a code + message via ferry_fail */
	int (*undo)(struct ferry_ctx *c);   /* reverse a successful run when the pipeline fails */
	int (*cleanup)(struct ferry_ctx *c);/* release holdings after every run */
	const struct ferry_key *keys;       /* the keys of its [stage] section, NULL-name ended */
	/* Appended within ABI 2 (a shorter descriptor, by `size`, declares none of these).
	 * Resources are words ("lock", "mount"), space-separated. When a run selects some
	 * stages only, the supervisor brings in, from the INI, the stages that provide what
	 * the selected ones need, and the stages that end what it brought in (ferry run
	 * --exact turns that off); `ferry check` refuses a stage placed where what it needs
	 * is not held (before its provider, after the stage that ends it). */
	const char *needs;                  /* held while run() runs: "lock mount" */
	const char *provides;               /* run() takes it, cleanup()/undo() let go: "lock" */
	const char *ends;                   /* run() releases what another stage provided: "lock" */
	const char *summary;                /* one line for `ferry help stages` */
};
#define FERRY_STAGE_MIN_SIZE offsetof(struct ferry_stage, needs)  /* an ABI 2 descriptor
								    * without needs/provides/ends */

#endif
