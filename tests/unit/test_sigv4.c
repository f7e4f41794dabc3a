/* test_sigv4.c: the SigV4 signer and S3 XML readers against AWS's published examples. */
#include "unit.h"

#include <unistd.h>

#include "s3_internal.h"

#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const char *suite_key = "AKIDEXAMPLE";
static const char *suite_secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
static const char *s3_key = "AKIAIOSFODNN7EXAMPLE";
static const char *s3_secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

/* aws-sig-v4-test-suite: get-vanilla (service "service", 20150830T123600Z) */
static void test_get_vanilla(void)
{
	struct sigv4_kv h[] = {
		{ "Host", "example.amazonaws.com" }, { "X-Amz-Date", "20150830T123600Z" },
	};
	struct sigv4_req r = {
		.method = "GET", .path = "/", .query = "", .hdrs = h, .n_hdrs = 2,
		.payload_hash = EMPTY_SHA, .amz_date = "20150830T123600Z", .region = "us-east-1",
		.service = "service", .access_key = suite_key, .secret_key = suite_secret,
	};
	struct sigv4_out o;

	ASSERT_EQ(sigv4_sign(&r, &o), 0);
	ASSERT_STREQ(o.canonical_request,
		     "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
		     "host;x-amz-date\n" EMPTY_SHA);
	ASSERT_STREQ(o.string_to_sign,
		     "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
		     "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63");
	ASSERT_STREQ(o.signature, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
	ASSERT_STREQ(o.authorization,
		     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
		     "SignedHeaders=host;x-amz-date, "
		     "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
	sigv4_out_release(&o);
}

/* get-vanilla-query-order-key-case: parameters arrive unsorted */
static void test_query_order(void)
{
	struct sigv4_kv q[] = { { "Param2", "value2" }, { "Param1", "value1" } };
	struct sigv4_kv h[] = {
		{ "host", "example.amazonaws.com" }, { "x-amz-date", "20150830T123600Z" },
	};
	char *query = sigv4_query(q, 2);
	struct sigv4_req r = {
		.method = "GET", .path = "/", .query = query, .hdrs = h, .n_hdrs = 2,
		.payload_hash = EMPTY_SHA, .amz_date = "20150830T123600Z", .region = "us-east-1",
		.service = "service", .access_key = suite_key, .secret_key = suite_secret,
	};
	struct sigv4_out o;

	ASSERT_STREQ(query, "Param1=value1&Param2=value2");
	ASSERT_EQ(sigv4_sign(&r, &o), 0);
	ASSERT_STREQ(o.signature, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
	sigv4_out_release(&o);
	free(query);
}

/* post-x-www-form-urlencoded: a signed content-type and a body hash */
static void test_post_form(void)
{
	struct sigv4_kv h[] = {
		{ "Content-Type", "application/x-www-form-urlencoded" },
		{ "Host", "example.amazonaws.com" }, { "X-Amz-Date", "20150830T123600Z" },
	};
	char hash[65];
	struct sigv4_req r = {
		.method = "POST", .path = "/", .query = "", .hdrs = h, .n_hdrs = 3,
		.payload_hash = hash, .amz_date = "20150830T123600Z", .region = "us-east-1",
		.service = "service", .access_key = suite_key, .secret_key = suite_secret,
	};
	struct sigv4_out o;

	sigv4_sha256_hex("Param1=value1", 13, hash);
	ASSERT_STREQ(hash, "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
	ASSERT_EQ(sigv4_sign(&r, &o), 0);
	ASSERT_STREQ(o.signature, "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
	sigv4_out_release(&o);
}

/* S3 docs, "Example: GET Object": a range, the empty-body hash, 20130524T000000Z */
static void test_s3_get_object(void)
{
	struct sigv4_kv h[] = {
		{ "Host", "examplebucket.s3.amazonaws.com" }, { "Range", "bytes=0-9" },
		{ "x-amz-content-sha256", EMPTY_SHA }, { "x-amz-date", "20130524T000000Z" },
	};
	struct sigv4_req r = {
		.method = "GET", .path = "/test.txt", .query = "", .hdrs = h, .n_hdrs = 4,
		.payload_hash = EMPTY_SHA, .amz_date = "20130524T000000Z", .region = "us-east-1",
		.service = "s3", .access_key = s3_key, .secret_key = s3_secret,
	};
	struct sigv4_out o;

	ASSERT_EQ(sigv4_sign(&r, &o), 0);
	ASSERT_STREQ(o.string_to_sign,
		     "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
		     "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
	ASSERT_STREQ(o.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	ASSERT_STREQ(o.authorization,
		     "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
		     "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
		     "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	sigv4_out_release(&o);
}

/* S3 docs, "Example: PUT Object": an encoded key ($ -> %24) and a real body hash */
static void test_s3_put_object(void)
{
	char hash[65];
	char *path = sigv4_uri_encode("/test$file.text", true);
	struct sigv4_kv h[] = {
		{ "Date", "Fri, 24 May 2013 00:00:00 GMT" }, { "Host", "examplebucket.s3.amazonaws.com" },
		{ "x-amz-content-sha256", hash }, { "x-amz-date", "20130524T000000Z" },
		{ "x-amz-storage-class", "REDUCED_REDUNDANCY" },
	};
	struct sigv4_req r = {
		.method = "PUT", .path = path, .query = "", .hdrs = h, .n_hdrs = 5,
		.payload_hash = hash, .amz_date = "20130524T000000Z", .region = "us-east-1",
		.service = "s3", .access_key = s3_key, .secret_key = s3_secret,
	};
	struct sigv4_out o;

	sigv4_sha256_hex("Welcome to Amazon S3.", 21, hash);
	ASSERT_STREQ(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	ASSERT_STREQ(path, "/test%24file.text");
	ASSERT_EQ(sigv4_sign(&r, &o), 0);
	ASSERT_STREQ(o.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
	sigv4_out_release(&o);
	free(path);
}

/* S3 docs, "Example: GET Bucket (List Objects)": ?max-keys=2&prefix=J; and ?lifecycle */
static void test_s3_list_and_subresource(void)
{
	struct sigv4_kv q[] = { { "prefix", "J" }, { "max-keys", "2" } };
	struct sigv4_kv lc[] = { { "lifecycle", "" } };
	struct sigv4_kv h[] = {
		{ "Host", "examplebucket.s3.amazonaws.com" },
		{ "x-amz-content-sha256", EMPTY_SHA }, { "x-amz-date", "20130524T000000Z" },
	};
	char *query = sigv4_query(q, 2), *lq = sigv4_query(lc, 1);
	struct sigv4_req r = {
		.method = "GET", .path = "/", .query = query, .hdrs = h, .n_hdrs = 3,
		.payload_hash = EMPTY_SHA, .amz_date = "20130524T000000Z", .region = "us-east-1",
		.service = "s3", .access_key = s3_key, .secret_key = s3_secret,
	};
	struct sigv4_out o;

	ASSERT_STREQ(query, "max-keys=2&prefix=J");
	ASSERT_EQ(sigv4_sign(&r, &o), 0);
	ASSERT_STREQ(o.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
	sigv4_out_release(&o);
	ASSERT_STREQ(lq, "lifecycle=");
	r.query = lq;
	ASSERT_EQ(sigv4_sign(&r, &o), 0);
	ASSERT_STREQ(o.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
	sigv4_out_release(&o);
	free(query);
	free(lq);
}

static void test_encoding(void)
{
	char *s;

	s = sigv4_uri_encode("a b+c/d~e_f.g-h%=&?", true);
	ASSERT_STREQ(s, "a%20b%2Bc/d~e_f.g-h%25%3D%26%3F");
	free(s);
	s = sigv4_uri_encode("x/y", false);
	ASSERT_STREQ(s, "x%2Fy");
	free(s);
	s = sigv4_uri_encode("\xd0\xba", true);
	ASSERT_STREQ(s, "%D0%BA");
	free(s);
	{
		struct sigv4_kv q[] = { { "prefix", "a b/" }, { "list-type", "2" },
					      { "continuation-token", "x+y=" } };

		s = sigv4_query(q, 3);
		ASSERT_STREQ(s, "continuation-token=x%2By%3D&list-type=2&prefix=a%20b%2F");
		free(s);
	}
}

/* header values are trimmed and inner runs of spaces collapsed (get-header-value-trim) */
static void test_header_trim(void)
{
	struct sigv4_kv h[] = {
		{ "My-Header1", "  value1  " }, { "my-header2", "\"a   b   c\"" },
		{ "host", "example.amazonaws.com" }, { "x-amz-date", "20150830T123600Z" },
	};
	struct sigv4_req r = {
		.method = "GET", .path = "/", .query = "", .hdrs = h, .n_hdrs = 4,
		.payload_hash = EMPTY_SHA, .amz_date = "20150830T123600Z", .region = "us-east-1",
		.service = "service", .access_key = suite_key, .secret_key = suite_secret,
	};
	struct sigv4_out o;

	ASSERT_EQ(sigv4_sign(&r, &o), 0);
	ASSERT_CONTAINS(o.canonical_request, "my-header1:value1\nmy-header2:\"a b c\"\n");
	ASSERT_CONTAINS(o.authorization, "SignedHeaders=host;my-header1;my-header2;x-amz-date,");
	sigv4_out_release(&o);
}

static void test_xml(void)
{
	static const char err[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PreconditionFailed</Code>"
		"<Message>At least one of the pre-conditions you specified did not hold</Message>"
		"<Condition>If-Match</Condition><RequestId>REQ123</RequestId></Error>";
	static const char list[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
		"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
		"<Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>"
		"<IsTruncated>true</IsTruncated>"
		"<Contents><Key>p/a&amp;b</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified>"
		"<ETag>&quot;abc&quot;</ETag><Size>12</Size></Contents>"
		"<Contents><Key>p/c</Key><Generation>1712345678901234</Generation><Size>0</Size>"
		"<ETag>\"d\"</ETag></Contents>"
		"<CommonPrefixes><Prefix>p/dir/</Prefix></CommonPrefixes>"
		"<NextContinuationToken>tok+1</NextContinuationToken></ListBucketResult>";
	char code[64], msg[256], rid[80], f[80] = "";
	struct ferry_s3_list l = { 0 };

	ASSERT_EQ(s3xml_error(err, sizeof(err) - 1, code, sizeof(code), msg, sizeof(msg),
				    rid, sizeof(rid)), 0);
	ASSERT_STREQ(code, "PreconditionFailed");
	ASSERT_STREQ(rid, "REQ123");
	ASSERT_CONTAINS(msg, "pre-conditions");
	ASSERT_EQ(s3xml_error("<Error><Code>x", 14, code, sizeof(code), msg, sizeof(msg),
				    rid, sizeof(rid)), -1);
	ASSERT_EQ(s3xml_error("<Other/>", 8, code, sizeof(code), msg, sizeof(msg), rid,
				    sizeof(rid)), -1);
	ASSERT_EQ(s3xml_list(list, sizeof(list) - 1, &l), 0);
	ASSERT_EQ(l.n_entries, 2);
	ASSERT_STREQ(l.entries[0].key, "p/a&b");
	ASSERT_STREQ(l.entries[0].etag, "\"abc\"");
	ASSERT_EQ(l.entries[0].size, 12);
	ASSERT_EQ(l.entries[0].last_modified, 1704164645);
	ASSERT_TRUE(l.entries[0].generation == NULL);
	ASSERT_STREQ(l.entries[1].generation, "1712345678901234");   /* GCS's, kept apart */
	ASSERT_STREQ(l.entries[1].etag, "\"d\"");
	ASSERT_EQ(l.n_prefixes, 1);
	ASSERT_STREQ(l.prefixes[0], "p/dir/");
	ASSERT_TRUE(l.truncated);
	ASSERT_STREQ(l.next_token, "tok+1");
	ferry_s3_list_release(&l);
	ASSERT_EQ(s3xml_list("garbage<", 8, &l), -1);
	ferry_s3_list_release(&l);
	{
		static const char init[] = "<InitiateMultipartUploadResult><Bucket>b</Bucket>"
					   "<UploadId>U-1</UploadId></InitiateMultipartUploadResult>";

		ASSERT_EQ(s3xml_field(init, strlen(init), "InitiateMultipartUploadResult/UploadId",
					    f, sizeof(f)), 0);
		ASSERT_EQ(s3xml_field(init, strlen(init), "InitiateMultipartUploadResult/Nope",
					    f, sizeof(f)), -1);
	}
	ASSERT_STREQ(f, "U-1");
	ASSERT_EQ(s3xml_root("<CopyObjectResult><ETag>x</ETag></CopyObjectResult>", 51, f,
				   sizeof(f)), 0);
	ASSERT_STREQ(f, "CopyObjectResult");
}

/* The payload hash of a body read from a file (PUTs over plain http to another machine):
 * the same digest as of the bytes in memory, across read chunks, and a clear error when
 * the file is shorter than the body. */
static void test_sha256_fd(void)
{
	char tmpl[] = "/tmp/ferry-test-sha-XXXXXX", want[65], got[65], why[128] = "";
	size_t n = 600000, off = 1000;
	unsigned char *buf = malloc(n + off);
	int fd = mkstemp(tmpl);

	ASSERT_TRUE(buf != NULL && fd >= 0);
	unlink(tmpl);
	for (size_t i = 0; i < n + off; i++)
		buf[i] = (unsigned char)(i * 131 + i / 7);
	ASSERT_EQ(write(fd, buf, n + off), (ssize_t)(n + off));
	sigv4_sha256_hex(buf + off, n, want);
	ASSERT_EQ(sigv4_sha256_fd_hex(fd, (off_t)off, n, got, why, sizeof(why)), 0);
	ASSERT_STREQ(got, want);
	ASSERT_EQ(sigv4_sha256_fd_hex(fd, 0, 0, got, why, sizeof(why)), 0);
	ASSERT_STREQ(got, EMPTY_SHA);
	ASSERT_EQ(sigv4_sha256_fd_hex(fd, (off_t)off, n + 1, got, why, sizeof(why)), -1);
	ASSERT_CONTAINS(why, "file shrank");
	close(fd);
	free(buf);
}

int main(void)
{
	test_get_vanilla();
	test_query_order();
	test_post_form();
	test_s3_get_object();
	test_s3_put_object();
	test_s3_list_and_subresource();
	test_encoding();
	test_header_trim();
	test_xml();
	test_sha256_fd();
	return UNIT_DONE();
}
