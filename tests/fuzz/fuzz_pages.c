/* fuzz_pages.c: the SQLite header parser and the page manifest decoder (pull/push). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ferry_manifest.h"
#include "ferry_pages.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_db_info info;
	struct ferry_manifest m;
	unsigned char *enc = NULL;
	size_t enc_len = 0;
	char err[256];

	/* the header, against the input's own length and a few claimed file sizes */
	ferry_pages_parse_header(data, size, size, &info, err, sizeof(err));
	ferry_pages_parse_header(data, size, (uint64_t)size * 4096, &info, err, sizeof(err));
	ferry_pages_parse_header(data, size, UINT64_MAX, &info, err, sizeof(err));
	/* a manifest that decodes must encode back to the same bytes */
	memset(&m, 0, sizeof(m));
	if (ferry_manifest_decode(data, size, &m, err, sizeof(err)) == 0) {
		if (ferry_manifest_encode(&m, &enc, &enc_len) != 0 || enc_len != size ||
		    memcmp(enc, data, size) != 0)
			abort();
		free(enc);
		ferry_manifest_release(&m);
	}
	return 0;
}
