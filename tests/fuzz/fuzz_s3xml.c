/* fuzz_s3xml.c: the S3 XML readers (error bodies, ListObjectsV2 pages, result fields). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char code[64], msg[256], rid[80], f[128];
	struct ferry_s3_list l;
	const char *xml = (const char *)data;
	size_t i;

	/* every reader sees every input: they share the walker, but not the callbacks */
	s3xml_error(xml, size, code, sizeof(code), msg, sizeof(msg), rid, sizeof(rid));
	memset(&l, 0, sizeof(l));
	if (s3xml_list(xml, size, &l) == 0) {
		for (i = 0; i < l.n_entries; i++)
			if (!l.entries[i].key)
				abort();        /* an entry without a key must never come out */
	}
	/* a second page appends to the first */
	s3xml_list(xml, size, &l);
	ferry_s3_list_release(&l);
	s3xml_field(xml, size, "InitiateMultipartUploadResult/UploadId", f, sizeof(f));
	s3xml_field(xml, size, "*/ETag", f, sizeof(f));
	s3xml_root(xml, size, f, sizeof(f));
	return 0;
}
