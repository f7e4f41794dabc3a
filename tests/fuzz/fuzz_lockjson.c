/* fuzz_lockjson.c: the lock body parser (ferry's own bodies and the shell locker's). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_lock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_lock_body b, again;
	char err[256];
	char *text;

	if (ferry_lock_parse((const char *)data, size, &b, err, sizeof(err)) != 0)
		return 0;
	/* what parses must survive a round trip through the formatter with its identity
	 * (expiry may move: an inconsistent body's legacy timestamp+timeout can win) */
	text = ferry_lock_format(&b);
	if (!text)
		abort();
	if (ferry_lock_parse(text, strlen(text), &again, err, sizeof(err)) != 0 ||
	    again.generation != b.generation || strcmp(again.nonce, b.nonce) != 0 ||
	    again.expires_at < b.expires_at)
		abort();
	free(text);
	return 0;
}
