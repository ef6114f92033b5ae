/*
 * storage "s3" without a server: the SigV4 signer against AWS's published
 * vectors, URI and query encoding, URL building, XML parsing, the retry
 * policy and backoff, status mapping, option checks. The driver's sources
 * are linked in directly (COFFER_BUILTIN); the host is the mock.
 *
 * Vectors: the aws-sig-v4-test-suite cases (credentials AKIDEXAMPLE,
 * 20150830T123600Z, us-east-1, service "service"; the "-unnormalized"
 * variants, since S3 signs the path as it is) and the four examples of
 * the S3 SigV4 documentation (examplebucket, 20130524T000000Z).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock_host.h"
#include "plugin/config.h"

#include "../../../plugins/storage_s3/s3.h"

extern const coffer_plugin *coffer_builtin_s3(const coffer_host *host);

#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SUITE_KEY "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define S3_KEY "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

typedef struct vector {
    const char *name;
    const char *method;
    const char *path; /* as the request line carries it, unencoded */
    s3_kv query[4];
    size_t nquery;
    s3_kv headers[6]; /* besides host and x-amz-date */
    size_t nheaders;
    const char *payload_hash;
    const char *token;
    const char *creq;          /* expected canonical request, NULL: not checked */
    const char *sts_hash_line; /* last line of the string to sign, NULL: not checked */
    const char *signed_headers;
    const char *signature;
} vector;

static const vector suite[] = {
    {"get-vanilla",
     "GET",
     "/",
     {{0}},
     0,
     {{0}},
     0,
     EMPTY_SHA,
     NULL,
     "GET\n/"
     "\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA,
     "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
     "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-unreserved",
     "GET",
     "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
     {{0}},
     0,
     {{0}},
     0,
     EMPTY_SHA,
     NULL,
     NULL,
     "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
     "host;x-amz-date",
     "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
    {"get-utf8",
     "GET",
     "/\xe1\x88\xb4",
     {{0}},
     0,
     {{0}},
     0,
     EMPTY_SHA,
     NULL,
     "GET\n/"
     "%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-"
     "date\n" EMPTY_SHA,
     "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
     "host;x-amz-date",
     "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
    {"get-space-unnormalized",
     "GET",
     "/example space/",
     {{0}},
     0,
     {{0}},
     0,
     EMPTY_SHA,
     NULL,
     "GET\n/example%20space/"
     "\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA,
     "63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
     "host;x-amz-date",
     "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"},
    {"get-slashes-unnormalized",
     "GET",
     "//example//",
     {{0}},
     0,
     {{0}},
     0,
     EMPTY_SHA,
     NULL,
     NULL,
     "528ec3105ee1f34ab014bb0a1a45da0ed2742a4fea3555149e5b4d5d201eb240",
     "host;x-amz-date",
     "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5"},
    {"get-relative-unnormalized",
     "GET",
     "/example/..",
     {{0}},
     0,
     {{0}},
     0,
     EMPTY_SHA,
     NULL,
     NULL,
     "0511f456aa502b456d135fcb9d749374a55228f9dbeedda1eacf659e05b0615b",
     "host;x-amz-date",
     "eca7ead57bb5aa5c8e28007acd4ff04e1ff9a0ff3b237ec1554a184887ff9282"},
    {"get-vanilla-query-order-key-case",
     "GET",
     "/",
     {{"Param2", "value2"}, {"Param1", "value1"}},
     2,
     {{0}},
     0,
     EMPTY_SHA,
     NULL,
     "GET\n/"
     "\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:"
     "20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA,
     "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
     "host;x-amz-date",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    {"get-vanilla-query-order-encoded",
     "GET",
     "/",
     {{"Param-3", "Value3"}, {"Param", "Value2"}, {"\xe1\x88\xb4", "Value1"}},
     3,
     {{0}},
     0,
     EMPTY_SHA,
     NULL,
     "GET\n/"
     "\n%E1%88%B4=Value1&Param=Value2&Param-3=Value3\nhost:example.amazonaws.com\nx-amz-date:"
     "20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA,
     "868294f5c38bd141c4972a373a76654f1418a8e4fc18b2e7903ae45e8ae0ec71",
     "host;x-amz-date",
     "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac"},
    {"get-vanilla-query-unreserved",
     "GET",
     "/",
     {{"-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
       "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"}},
     1,
     {{0}},
     0,
     EMPTY_SHA,
     NULL,
     NULL,
     "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
     "host;x-amz-date",
     "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
    {"get-vanilla-utf8-query",
     "GET",
     "/",
     {{"\xe1\x88\xb4", "bar"}},
     1,
     {{0}},
     0,
     EMPTY_SHA,
     NULL,
     NULL,
     "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
     "host;x-amz-date",
     "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
    {"get-vanilla-with-session-token",
     "GET",
     "/",
     {{0}},
     0,
     {{0}},
     0,
     EMPTY_SHA,
     "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
     NULL,
     "067b36aa60031588cea4a4cde1f21215227a047690c72247f1d70b32fbbfad2b",
     "host;x-amz-date;x-amz-security-token",
     "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"},
    {"get-header-key-duplicate",
     "GET",
     "/",
     {{0}},
     0,
     {{"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}},
     3,
     EMPTY_SHA,
     NULL,
     "GET\n/"
     "\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:"
     "20150830T123600Z\n\nhost;my-header1;x-amz-date\n" EMPTY_SHA,
     "dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
     "host;my-header1;x-amz-date",
     "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
    {"get-header-value-order",
     "GET",
     "/",
     {{0}},
     0,
     {{"My-Header1", "value4"},
      {"My-Header1", "value1"},
      {"My-Header1", "value3"},
      {"My-Header1", "value2"}},
     4,
     EMPTY_SHA,
     NULL,
     NULL,
     "31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
     "host;my-header1;x-amz-date",
     "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
    {"get-header-value-trim",
     "GET",
     "/",
     {{0}},
     0,
     {{"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}},
     2,
     EMPTY_SHA,
     NULL,
     "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b "
     "c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n" EMPTY_SHA,
     "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
     "host;my-header1;my-header2;x-amz-date",
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
    {"post-vanilla",
     "POST",
     "/",
     {{0}},
     0,
     {{0}},
     0,
     EMPTY_SHA,
     NULL,
     NULL,
     NULL,
     "host;x-amz-date",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-vanilla-query",
     "POST",
     "/",
     {{"Param1", "value1"}},
     1,
     {{0}},
     0,
     EMPTY_SHA,
     NULL,
     NULL,
     "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
     "host;x-amz-date",
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
    {"post-header-value-case",
     "POST",
     "/",
     {{0}},
     0,
     {{"My-Header1", "VALUE1"}},
     1,
     EMPTY_SHA,
     NULL,
     NULL,
     "d51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93",
     "host;my-header1;x-amz-date",
     "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"},
    /* the form body "Param1=value1" (13 bytes), as aws-c-auth signs it */
    {"post-x-www-form-urlencoded",
     "POST",
     "/",
     {{0}},
     0,
     {{"Content-Type", "application/x-www-form-urlencoded"},
      {"Content-Length", "13"},
      {"x-amz-content-sha256", "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"}},
     3,
     "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
     NULL,
     "POST\n/\n\ncontent-length:13\ncontent-type:application/"
     "x-www-form-urlencoded\nhost:example.amazonaws.com\n"
     "x-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\nx-amz-"
     "date:20150830T123600Z\n\n"
     "content-length;content-type;host;x-amz-content-sha256;x-amz-"
     "date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
     "b1edd1d03544c25390e32085d55b57acc9a3961bb59415ff86c45c3d89d16cfb",
     "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
     "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"},
};

static void sign_one(const vector *v, const char *host, const char *date, const char *akid,
                     const char *secret, const char *service, s3_sign_out *out)
{
    s3_kv hs[10];
    size_t n = 0;
    hs[n++] = (s3_kv){"Host", host};
    hs[n++] = (s3_kv){"X-Amz-Date", date};
    if (v->token)
        hs[n++] = (s3_kv){"X-Amz-Security-Token", v->token};
    for (size_t i = 0; i < v->nheaders; i++)
        hs[n++] = v->headers[i];
    s3_sign_in in = {
        .method = v->method,
        .path = v->path,
        .query = v->query,
        .nquery = v->nquery,
        .headers = hs,
        .nheaders = n,
        .payload_hash = v->payload_hash,
        .access_key = akid,
        .secret_key = secret,
        .region = "us-east-1",
        .service = service,
        .amz_date = date,
    };
    assert_int_equal(s3_sign(&in, out), 0);
}

static void test_sigv4_suite(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof suite / sizeof suite[0]; i++) {
        const vector *v = &suite[i];
        s3_sign_out out;
        sign_one(v, "example.amazonaws.com", "20150830T123600Z", "AKIDEXAMPLE", SUITE_KEY,
                 "service", &out);
        print_message("  %s\n", v->name);
        if (v->creq)
            assert_string_equal(out.canonical.s, v->creq);
        if (v->sts_hash_line) {
            char want[300];
            snprintf(
                want, sizeof want,
                "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n%s",
                v->sts_hash_line);
            assert_string_equal(out.string_to_sign.s, want);
        }
        assert_string_equal(out.signature, v->signature);
        char authz[600];
        snprintf(authz, sizeof authz,
                 "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                 "SignedHeaders=%s, "
                 "Signature=%s",
                 v->signed_headers, v->signature);
        assert_string_equal(out.authorization.s, authz);
        s3_sign_out_free(&out);
    }
}

/* The four worked examples of the S3 SigV4 documentation. */
static void test_sigv4_s3_examples(void **state)
{
    (void)state;
    char put_hash[65];
    s3_sha256_hex("Welcome to Amazon S3.", 21, put_hash);
    assert_string_equal(put_hash,
                        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    const vector ex[] = {
        {"GET object with range",
         "GET",
         "/test.txt",
         {{0}},
         0,
         {{"Range", "bytes=0-9"}, {"x-amz-content-sha256", EMPTY_SHA}},
         2,
         EMPTY_SHA,
         NULL,
         "GET\n/"
         "test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\nx-amz-content-"
         "sha256:" EMPTY_SHA
         "\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA,
         NULL,
         "host;range;x-amz-content-sha256;x-amz-date",
         "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"},
        {"PUT object",
         "PUT",
         "/test$file.text",
         {{0}},
         0,
         {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
          {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
          {"x-amz-content-sha256", put_hash}},
         3,
         put_hash,
         NULL,
         NULL,
         NULL,
         "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
         "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"},
        {"GET bucket lifecycle",
         "GET",
         "/",
         {{"lifecycle", NULL}},
         1,
         {{"x-amz-content-sha256", EMPTY_SHA}},
         1,
         EMPTY_SHA,
         NULL,
         NULL,
         NULL,
         "host;x-amz-content-sha256;x-amz-date",
         "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"},
        {"GET bucket (list objects)",
         "GET",
         "/",
         {{"max-keys", "2"}, {"prefix", "J"}},
         2,
         {{"x-amz-content-sha256", EMPTY_SHA}},
         1,
         EMPTY_SHA,
         NULL,
         NULL,
         NULL,
         "host;x-amz-content-sha256;x-amz-date",
         "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"},
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        s3_sign_out out;
        print_message("  %s\n", ex[i].name);
        sign_one(&ex[i], "examplebucket.s3.amazonaws.com", "20130524T000000Z",
                 "AKIAIOSFODNN7EXAMPLE", S3_KEY, "s3", &out);
        if (ex[i].creq)
            assert_string_equal(out.canonical.s, ex[i].creq);
        assert_string_equal(out.signature, ex[i].signature);
        char authz[600];
        snprintf(
            authz, sizeof authz,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=%s, Signature=%s",
            ex[i].signed_headers, ex[i].signature);
        assert_string_equal(out.authorization.s, authz);
        s3_sign_out_free(&out);
    }
}

static void test_encoding(void **state)
{
    (void)state;
    s3_str b = {0};
    s3_uri_encode(&b, "a b/c~d+e$\xc3\xa9", 1);
    assert_string_equal(b.s, "a%20b/c~d%2Be%24%C3%A9");
    s3_str_clear(&b);
    s3_uri_encode(&b, "a/b=c&d", 0);
    assert_string_equal(b.s, "a%2Fb%3Dc%26d");
    s3_str_clear(&b);
    /* canonical: "name=" for a bare parameter; URL: "name" */
    s3_kv q[] = {{"versions", NULL}, {"prefix", "a b+c/"}, {"key-marker", "x"}};
    s3_query_string(&b, q, 3, 0);
    assert_string_equal(b.s, "key-marker=x&prefix=a%20b%2Bc%2F&versions=");
    s3_str_clear(&b);
    s3_query_string(&b, q, 3, 1);
    assert_string_equal(b.s, "key-marker=x&prefix=a%20b%2Bc%2F&versions");
    s3_str_free(&b);
    char d[17];
    s3_amz_date(1440938160, d); /* 2015-08-30T12:36:00Z */
    assert_string_equal(d, "20150830T123600Z");
    assert_int_equal(s3_parse_iso8601("2015-08-30T12:36:00.000Z"), 1440938160);
    assert_int_equal(s3_parse_iso8601("garbage"), 0);
    assert_int_equal(s3_content_range_total("bytes */1234"), 1234);
    assert_int_equal(s3_content_range_total("bytes 0-9/77"), 77);
    assert_int_equal(s3_content_range_total("bytes 0-9/*"), -1);
    assert_int_equal(s3_content_range_total(NULL), -1);
}

static void test_xml(void **state)
{
    (void)state;
    static const char list[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<ListBucketResult "
        "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>b</Name><Prefix>p/</Prefix>"
        "<IsTruncated>true</IsTruncated><NextContinuationToken>tok+/=</NextContinuationToken>"
        "<Contents><Key>p/a &amp; b</Key><LastModified>2026-11-27T03:30:00.000Z</LastModified>"
        "<ETag>&quot;abc&quot;</ETag><Size>12</Size></Contents>"
        "<Contents><Key>p/\xe1\x88\xb4</Key><Size>0</Size></Contents></ListBucketResult>";
    s3_xml *x = s3_xml_parse(list, sizeof list - 1);
    assert_non_null(x);
    s3_xml_node *r = s3_xml_root(x);
    assert_string_equal(s3_xml_name(r), "ListBucketResult");
    char buf[64];
    assert_int_equal(s3_xml_text(r, "IsTruncated", buf, sizeof buf), 1);
    assert_string_equal(buf, "true");
    assert_int_equal(s3_xml_text(r, "Missing", buf, sizeof buf), 0);
    assert_string_equal(buf, "");
    s3_xml_node *c = s3_xml_next(r, NULL, "Contents");
    assert_non_null(c);
    char *k = s3_xml_strdup(c, "Key");
    assert_string_equal(k, "p/a & b");
    free(k);
    s3_xml_text(c, "ETag", buf, sizeof buf);
    assert_string_equal(buf, "\"abc\"");
    c = s3_xml_next(r, c, "Contents");
    k = s3_xml_strdup(c, "Key");
    assert_string_equal(k, "p/\xe1\x88\xb4");
    free(k);
    assert_null(s3_xml_next(r, c, "Contents"));
    k = s3_xml_strdup(r, "NextContinuationToken");
    assert_string_equal(k, "tok+/=");
    free(k);
    s3_xml_free(x);

    static const char err[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code>"
        "<Message>We encountered an internal error. Please try again.</Message></Error>";
    char code[64], msg[128];
    assert_int_equal(s3_xml_error(err, sizeof err - 1, code, sizeof code, msg, sizeof msg), 1);
    assert_string_equal(code, "InternalError");
    assert_string_equal(msg, "We encountered an internal error. Please try again.");
    static const char ok[] =
        "<CompleteMultipartUploadResult><ETag>\"x-2\"</ETag></CompleteMultipartUploadResult>";
    assert_int_equal(s3_xml_error(ok, sizeof ok - 1, code, sizeof code, msg, sizeof msg), 0);
    assert_int_equal(s3_xml_error("not xml <Error", 14, code, sizeof code, msg, sizeof msg), 0);
    assert_null(s3_xml_parse("<a><b></a>", 10));
    /* no entity expansion, no network */
    static const char xxe[] =
        "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><a>&e;</a>";
    x = s3_xml_parse(xxe, sizeof xxe - 1);
    if (x) {
        k = s3_xml_strdup(s3_xml_root(x), NULL);
        assert_null(strstr(k, "root:"));
        free(k);
        s3_xml_free(x);
    }

    s3_str b = {0};
    char etags[2][80] = {"\"a\"", "\"b&c\""};
    s3_xml_complete_body(&b, etags, 2);
    assert_non_null(
        strstr(b.s, "<Part><PartNumber>1</PartNumber><ETag>&quot;a&quot;</ETag></Part>"));
    assert_non_null(
        strstr(b.s, "<Part><PartNumber>2</PartNumber><ETag>&quot;b&amp;c&quot;</ETag></Part>"));
    s3_str_free(&b);
}

static void test_retry_policy(void **state)
{
    (void)state;
    assert_true(s3_retryable(CURLE_COULDNT_CONNECT, 0, NULL));
    assert_true(s3_retryable(CURLE_RECV_ERROR, 0, NULL));
    assert_true(s3_retryable(CURLE_SEND_ERROR, 0, NULL));
    assert_true(s3_retryable(CURLE_OPERATION_TIMEDOUT, 0, NULL));
    assert_true(s3_retryable(CURLE_GOT_NOTHING, 0, NULL));
    assert_true(s3_retryable(CURLE_PARTIAL_FILE, 0, NULL));
    assert_false(s3_retryable(CURLE_SSL_CACERT_BADFILE, 0, NULL));
    assert_false(s3_retryable(CURLE_PEER_FAILED_VERIFICATION, 0, NULL));
    assert_false(s3_retryable(CURLE_URL_MALFORMAT, 0, NULL));
    assert_true(s3_retryable(CURLE_OK, 500, "InternalError"));
    assert_true(s3_retryable(CURLE_OK, 502, ""));
    assert_true(s3_retryable(CURLE_OK, 503, "SlowDown"));
    assert_true(s3_retryable(CURLE_OK, 429, ""));
    assert_true(s3_retryable(CURLE_OK, 400, "RequestTimeout"));
    assert_false(s3_retryable(CURLE_OK, 501, "NotImplemented"));
    assert_false(s3_retryable(CURLE_OK, 403, "SignatureDoesNotMatch"));
    assert_false(s3_retryable(CURLE_OK, 404, "NoSuchKey"));
    assert_false(s3_retryable(CURLE_OK, 412, "PreconditionFailed"));

    /* backoff: doubles from the base, jitter in [d/2, d], capped */
    uint32_t rng = 12345;
    for (int round = 0; round < 200; round++) {
        for (int a = 1; a <= 12; a++) {
            unsigned d = 100u << (a - 1 < 10 ? a - 1 : 10);
            if (d > 5000)
                d = 5000;
            unsigned ms = s3_backoff_ms(100, 5000, a, &rng);
            assert_true(ms >= d / 2);
            assert_true(ms <= d);
        }
    }
    /* jitter actually varies */
    unsigned a = s3_backoff_ms(1000, 60000, 3, &rng), b = a;
    for (int i = 0; i < 10 && b == a; i++)
        b = s3_backoff_ms(1000, 60000, 3, &rng);
    assert_int_not_equal(a, b);
}

static void test_status_map(void **state)
{
    (void)state;
    struct {
        CURLcode cc;
        long status;
        const char *code;
        int in200;
        coffer_status want;
    } cases[] = {
        {CURLE_OK, 200, "", 0, COFFER_OK},
        {CURLE_OK, 204, "", 0, COFFER_OK},
        {CURLE_OK, 200, "InternalError", 1, COFFER_ERR_RETRY},
        {CURLE_OK, 404, "NoSuchKey", 0, COFFER_ERR_NOT_FOUND},
        {CURLE_OK, 404, "NoSuchBucket", 0, COFFER_ERR_NOT_FOUND},
        {CURLE_OK, 404, "", 0, COFFER_ERR_NOT_FOUND},
        {CURLE_OK, 403, "SignatureDoesNotMatch", 0, COFFER_ERR_AUTH},
        {CURLE_OK, 403, "InvalidAccessKeyId", 0, COFFER_ERR_AUTH},
        {CURLE_OK, 403, "", 0, COFFER_ERR_AUTH},
        {CURLE_OK, 412, "PreconditionFailed", 0, COFFER_ERR_EXISTS},
        {CURLE_OK, 501, "NotImplemented", 0, COFFER_ERR_UNSUPPORTED},
        {CURLE_OK, 503, "SlowDown", 0, COFFER_ERR_RETRY},
        {CURLE_OK, 507, "", 0, COFFER_ERR_NO_SPACE},
        {CURLE_OK, 400, "InvalidArgument", 0, COFFER_ERR_INVALID},
        {CURLE_COULDNT_CONNECT, 0, "", 0, COFFER_ERR_RETRY},
        {CURLE_PEER_FAILED_VERIFICATION, 0, "", 0, COFFER_ERR_FAILED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s3_resp rs;
        s3_resp_init(&rs, 0);
        rs.curl_rc = cases[i].cc;
        rs.status = cases[i].status;
        snprintf(rs.err_code, sizeof rs.err_code, "%s", cases[i].code);
        rs.error_in_200 = cases[i].in200;
        assert_int_equal(s3_map_status(&rs), cases[i].want);
    }
}

/* ---- instances (no network) --------------------------------------------------- */

typedef struct fx {
    mock_host mh;
    const coffer_plugin *drv;
    coffer_config *cfg;
    void *inst;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    mock_host_init(&f->mh);
    f->drv = coffer_builtin_s3(&f->mh.host);
    assert_non_null(f->drv);
    f->cfg = cf_config_new();
    setenv("TEST_S3_AK", "AKIDTEST", 1);
    setenv("TEST_S3_SK", "very/secret+key", 1);
    cf_config_set(f->cfg, "access_key_env", "TEST_S3_AK", 0, 0);
    cf_config_set(f->cfg, "secret_key_env", "TEST_S3_SK", 0, 0);
    cf_config_set(f->cfg, "bucket", "my-bucket", 0, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->inst)
        f->drv->storage->instance_free(f->inst);
    cf_config_free(f->cfg);
    mock_host_cleanup(&f->mh);
    free(f);
    return 0;
}

static coffer_status make(fx *f)
{
    if (f->inst)
        f->drv->storage->instance_free(f->inst);
    f->inst = NULL;
    return f->drv->storage->instance_new(&f->mh.host, mock_hctx(&f->mh), f->cfg, &f->inst);
}

static void test_urls(void **state)
{
    fx *f = *state;
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_ENDPOINT_URL_S3");
    unsetenv("AWS_REGION");
    unsetenv("AWS_DEFAULT_REGION");
    cf_config_set(f->cfg, "prefix", "/backups/asterdrive/", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    s3_instance *in = f->inst;
    assert_string_equal(in->prefix, "backups/asterdrive/");
    assert_string_equal(in->region, "us-east-1");
    assert_int_equal(in->path_style, 0); /* AWS, DNS-compatible bucket */
    s3_str u = {0};
    s3_kv q[] = {{"partNumber", "3"}, {"uploadId", "a/b+c"}};
    s3_url(in, "backups/asterdrive/data/ab/c d+é", q, 2, &u);
    assert_string_equal(
        u.s,
        "https://my-bucket.s3.us-east-1.amazonaws.com/backups/asterdrive/data/ab/c%20d%2B%C3%A9"
        "?partNumber=3&uploadId=a%2Fb%2Bc");
    s3_str_free(&u);

    /* custom endpoint: path style, default port dropped, base path kept */
    cf_config_set(f->cfg, "endpoint", "http://127.0.0.1:80/s3/", 0, 0);
    cf_config_set(f->cfg, "region", "eu-west-3", 0, 0);
    cf_config_set(f->cfg, "prefix", "", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    in = f->inst;
    assert_int_equal(in->path_style, 1);
    assert_string_equal(in->host_port, "127.0.0.1");
    s3_kv v[] = {{"versions", NULL}};
    s3_url(in, NULL, v, 1, &u);
    assert_string_equal(u.s, "http://127.0.0.1/s3/my-bucket?versions");
    s3_str_clear(&u);
    s3_url(in, "config", NULL, 0, &u);
    assert_string_equal(u.s, "http://127.0.0.1/s3/my-bucket/config");
    s3_str_clear(&u);
    s3_path(in, "config", &u);
    assert_string_equal(u.s, "/s3/my-bucket/config");
    s3_str_free(&u);

    /* environment defaults */
    cf_config_set(f->cfg, "endpoint", "", 0, 0);
    cf_config_set(f->cfg, "region", "", 0, 0);
    setenv("AWS_ENDPOINT_URL", "https://minio.example:9000", 1);
    setenv("AWS_REGION", "ap-south-1", 1);
    assert_int_equal(make(f), COFFER_OK);
    in = f->inst;
    assert_string_equal(in->scheme, "https");
    assert_string_equal(in->host_port, "minio.example:9000");
    assert_string_equal(in->region, "ap-south-1");
    assert_int_equal(in->path_style, 1);
    unsetenv("AWS_ENDPOINT_URL");
    unsetenv("AWS_REGION");
    /* a dotted bucket on AWS goes path style */
    cf_config_set(f->cfg, "bucket", "my.bucket", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(((s3_instance *)f->inst)->path_style, 1);
    cf_config_set(f->cfg, "path_style", "false", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(((s3_instance *)f->inst)->path_style, 0);
}

static void test_options(void **state)
{
    fx *f = *state;
    assert_int_equal(make(f), COFFER_OK);
    s3_instance *in = f->inst;
    assert_int_equal(in->part_size, 16u << 20);
    assert_int_equal(in->parallel_parts, 4);
    assert_int_equal(in->mem_limit, 64u << 20);
    assert_string_equal(in->access_key, "AKIDTEST");
    assert_string_equal(in->secret_key, "very/secret+key");

    cf_config_set(f->cfg, "part_size", "1M", 0, 0);
    assert_int_equal(make(f), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "part_size"));
    cf_config_set(f->cfg, "part_size", "8M", 0, 0);
    cf_config_set(f->cfg, "parallel_parts", "0", 0, 0);
    assert_int_equal(make(f), COFFER_ERR_INVALID);
    cf_config_set(f->cfg, "parallel_parts", "2", 0, 0);
    /* connections: unset is the core's default (the idle pool sized for
     * its largest, 16), an explicit 0 or 65 is refused naming the option */
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(((s3_instance *)f->inst)->connections, 16);
    cf_config_set(f->cfg, "connections", "0", 0, 0);
    assert_int_equal(make(f), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "connections"));
    cf_config_set(f->cfg, "connections", "65", 0, 0);
    assert_int_equal(make(f), COFFER_ERR_INVALID);
    cf_config_set(f->cfg, "connections", "5", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_int_equal(((s3_instance *)f->inst)->connections, 5);
    /* inflight_bytes: unset is the core's default; outside 1M..1G refused */
    cf_config_set(f->cfg, "inflight_bytes", "512K", 0, 0);
    assert_int_equal(make(f), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "inflight_bytes"));
    cf_config_set(f->cfg, "inflight_bytes", "2G", 0, 0);
    assert_int_equal(make(f), COFFER_ERR_INVALID);
    cf_config_set(f->cfg, "inflight_bytes", "48M", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    cf_config_set(f->cfg, "require_versioning", "maybe", 0, 0);
    assert_int_equal(make(f), COFFER_ERR_INVALID);
    assert_non_null(strstr(f->mh.last_error, "require_versioning"));
    cf_config_set(f->cfg, "require_versioning", "warn", 0, 0);
    cf_config_set(f->cfg, "endpoint", "ftp://x", 0, 0);
    assert_int_equal(make(f), COFFER_ERR_INVALID);
    cf_config_set(f->cfg, "endpoint", "http://user:pw@host", 0, 0);
    assert_int_equal(make(f), COFFER_ERR_INVALID);
    cf_config_set(f->cfg, "endpoint", "http://127.0.0.1:9", 0, 0);
    cf_config_set(f->cfg, "prefix", "a/../b", 0, 0);
    assert_int_equal(make(f), COFFER_ERR_INVALID);
    cf_config_set(f->cfg, "prefix", "a b/ü+", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    in = f->inst;
    assert_int_equal(in->require_versioning, S3_REQ_WARN);
    assert_int_equal(in->mem_limit, 16u << 20);

    /* keys: prefix added, bad ones refused */
    coffer_status st;
    char *k = s3_object_key(in, "data/ab/x", &st);
    assert_string_equal(k, "a b/ü+/data/ab/x");
    free(k);
    assert_null(s3_object_key(in, "/abs", &st));
    assert_int_equal(st, COFFER_ERR_INVALID);
    assert_null(s3_object_key(in, "a//b", &st));
    assert_null(s3_object_key(in, "a/./b", &st));
    assert_null(s3_object_key(in, "a\nb", &st));
    assert_null(s3_object_key(in, "", &st));

    /* credentials: from a file; none at all is a clear error naming the variables */
    char path[600];
    snprintf(path, sizeof path, "%s/sk", f->mh.tmpdir);
    FILE *fp = fopen(path, "w");
    fputs("file-secret\n", fp);
    fclose(fp);
    cf_config_set(f->cfg, "secret_key_env", "", 0, 0);
    cf_config_set(f->cfg, "secret_key_file", path, 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    assert_string_equal(((s3_instance *)f->inst)->secret_key, "file-secret");
    cf_config_set(f->cfg, "secret_key_file", "", 0, 0);
    cf_config_set(f->cfg, "access_key_env", "", 0, 0);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    assert_int_equal(make(f), COFFER_ERR_AUTH);
    assert_non_null(strstr(f->mh.last_error, "AWS_ACCESS_KEY_ID"));
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "env-secret", 1);
    assert_int_equal(make(f), COFFER_OK);
    assert_string_equal(((s3_instance *)f->inst)->access_key, "AKIDENV");
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");

    uint32_t caps = f->drv->storage->capabilities(f->inst);
    assert_true(caps & COFFER_CAP_ATOMIC_PUBLISH);
    assert_true(caps & COFFER_CAP_CONDITIONAL_CREATE);
    assert_true(caps & COFFER_CAP_VERSIONING);
    assert_true(caps & COFFER_CAP_RANGED_READ);
    assert_false(caps & COFFER_CAP_LOCAL);
}

/* A server that is not there: retried, then a clear error that names the
 * bucket and key and never the secret. */
static void test_unreachable(void **state)
{
    fx *f = *state;
    cf_config_set(f->cfg, "endpoint", "http://127.0.0.1:9", 0, 0); /* discard port: refused */
    cf_config_set(f->cfg, "retries", "2", 0, 0);
    cf_config_set(f->cfg, "retry_delay", "10", 0, 0);
    assert_int_equal(make(f), COFFER_OK);
    coffer_object_stat st = {.struct_size = sizeof st};
    coffer_status rc = f->drv->storage->stat(f->inst, "config", &st);
    assert_int_equal(rc, COFFER_ERR_RETRY);
    assert_non_null(strstr(f->mh.last_error, "my-bucket/config"));
    assert_non_null(strstr(f->mh.last_error, "after 3 attempts"));
    assert_null(strstr(f->mh.last_error, "very/secret+key"));
    void *r = NULL;
    rc = f->drv->storage->reader_open(f->inst, "config", 0, 0, &r);
    assert_int_not_equal(rc, COFFER_OK);
    assert_null(r);
    void *w = NULL;
    coffer_write_opts o = {.struct_size = sizeof o};
    assert_int_equal(f->drv->storage->writer_open(f->inst, "x", &o, &w), COFFER_OK);
    assert_int_equal(f->drv->storage->writer_write(w, "abc", 3), COFFER_OK);
    rc = f->drv->storage->writer_commit(w);
    assert_int_equal(rc, COFFER_ERR_RETRY);
    assert_non_null(strstr(f->mh.last_error, "S3 PUT my-bucket/x"));
}

/* ---- object lock retention ---------------------------------------------------- */

static void test_retention_format(void **state)
{
    (void)state;
    /* modes */
    assert_string_equal(s3_lock_mode_name(COFFER_LOCK_GOVERNANCE), "GOVERNANCE");
    assert_string_equal(s3_lock_mode_name(COFFER_LOCK_COMPLIANCE), "COMPLIANCE");
    assert_null(s3_lock_mode_name(COFFER_LOCK_NONE));
    assert_null(s3_lock_mode_name(7));
    assert_int_equal(s3_lock_mode_parse("GOVERNANCE"), COFFER_LOCK_GOVERNANCE);
    assert_int_equal(s3_lock_mode_parse("compliance"), COFFER_LOCK_COMPLIANCE);
    assert_int_equal(s3_lock_mode_parse(""), COFFER_LOCK_NONE);
    assert_int_equal(s3_lock_mode_parse("LEGALHOLD"), COFFER_LOCK_NONE);
    assert_int_equal(s3_lock_mode_parse(NULL), COFFER_LOCK_NONE);

    /* dates: the retain-until form S3 takes, read back in every form servers write */
    char d[32];
    s3_iso8601(1796424008, d);
    assert_string_equal(d, "2026-12-04T22:40:08Z");
    s3_iso8601(0, d);
    assert_string_equal(d, "1970-01-01T00:00:00Z");
    assert_int_equal(s3_parse_iso8601("2026-12-04T22:40:08Z"), 1796424008);
    assert_int_equal(s3_parse_iso8601("2026-12-04T22:40:08.000Z"), 1796424008);
    assert_int_equal(s3_parse_iso8601("2026-12-04T22:40:08.000000000Z"), 1796424008);
    assert_int_equal(s3_parse_http_date("Fri, 04 Dec 2026 22:40:08 GMT"), 1796424008);
    assert_int_equal(s3_parse_http_date("Friday, 04-Dec-26 22:40:08 GMT"), 1796424008);
    assert_int_equal(s3_parse_http_date(""), 0);
    assert_int_equal(s3_parse_http_date("not a date"), 0);
    assert_int_equal(s3_parse_http_date(NULL), 0);

    /* the PutObjectRetention document */
    s3_str b = {0};
    s3_retention_body(&b, COFFER_LOCK_COMPLIANCE, 1796424008);
    assert_string_equal(s3_str_cstr(&b),
                        "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                        "<Mode>COMPLIANCE</Mode><RetainUntilDate>2026-12-04T22:40:08Z"
                        "</RetainUntilDate></Retention>");
    s3_str_free(&b);
}

/* Response headers of a locked object and the Date header reach s3_resp. */
static void test_retention_headers(void **state)
{
    (void)state;
    s3_resp rs;
    s3_resp_init(&rs, 0);
    const char *lines[] = {
        "HTTP/1.1 200 OK\r\n",
        "Date: Fri, 04 Dec 2026 22:40:08 GMT\r\n",
        "x-amz-object-lock-mode: GOVERNANCE\r\n",
        "X-Amz-Object-Lock-Retain-Until-Date: 2026-12-05T01:54:31.000000000Z\r\n",
        "\r\n",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        assert_int_equal(s3_header_cb((char *)lines[i], 1, strlen(lines[i]), &rs),
                         strlen(lines[i]));
    assert_int_equal(rs.date, 1796424008);
    assert_string_equal(rs.lock_mode, "GOVERNANCE");
    assert_string_equal(rs.lock_until, "2026-12-05T01:54:31.000000000Z");
    /* a new response (after a retry) starts clean */
    const char *again = "HTTP/1.1 200 OK\r\n";
    s3_header_cb((char *)again, 1, strlen(again), &rs);
    assert_string_equal(rs.lock_mode, "");
    assert_string_equal(rs.lock_until, "");
    assert_int_equal(rs.date, 0);
    s3_resp_free(&rs);
}

/* 403 AccessDenied: object lock's refusal is COFFER_ERR_LOCKED, a policy's
 * (RGW: empty message; AWS: "Access Denied") stays COFFER_ERR_AUTH. */
static void test_retention_errors(void **state)
{
    (void)state;
    struct {
        long status;
        const char *code, *msg;
        coffer_status want;
    } cases[] = {
        {403, "AccessDenied", "forbidden by object lock", COFFER_ERR_LOCKED},
        {403, "AccessDenied",
         "proposed retain-until date shortens an existing retention period and governance "
         "bypass check failed",
         COFFER_ERR_LOCKED},
        {403, "AccessDenied", "Access Denied because object protected by object lock.",
         COFFER_ERR_LOCKED},
        {403, "AccessDenied", "", COFFER_ERR_AUTH},
        {403, "AccessDenied", "Access Denied", COFFER_ERR_AUTH},
        {403, "SignatureDoesNotMatch", "", COFFER_ERR_AUTH},
        {403, "", "", COFFER_ERR_AUTH},
        {400, "InvalidRequest", "Bucket is missing Object Lock Configuration", COFFER_ERR_INVALID},
        {400, "ObjectLocked", "", COFFER_ERR_LOCKED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s3_resp rs;
        s3_resp_init(&rs, 0);
        rs.status = cases[i].status;
        snprintf(rs.err_code, sizeof rs.err_code, "%s", cases[i].code);
        snprintf(rs.err_msg, sizeof rs.err_msg, "%s", cases[i].msg);
        print_message("  %ld %s '%s'\n", cases[i].status, cases[i].code, cases[i].msg);
        assert_int_equal(s3_map_status(&rs), cases[i].want);
    }
}

static void test_retention_messages(void **state)
{
    fx *f = *state;
    assert_int_equal(make(f), COFFER_OK);
    s3_instance *in = f->inst;
    s3_resp rs;
    s3_resp_init(&rs, 0);
    rs.status = 403;
    snprintf(rs.err_code, sizeof rs.err_code, "AccessDenied");
    char msg[2048];
    s3_describe(in, "DELETE", "data/ab/ab12", &rs, msg, sizeof msg);
    assert_string_equal(msg, "S3 DELETE my-bucket/data/ab/ab12: HTTP 403 AccessDenied (access "
                             "denied: these credentials may not delete; forget and prune need "
                             "the maintenance credentials)");
    s3_describe(in, "PUT ?retention", "data/ab/ab12", &rs, msg, sizeof msg);
    assert_non_null(strstr(msg, "s3:PutObjectRetention"));
    s3_resp_free(&rs);

    /* capabilities follow the bucket's object lock */
    const coffer_storage_ops *ops = f->drv->storage;
    assert_int_equal(ops->capabilities(in) & COFFER_CAP_RETENTION, 0);
    in->lock_enabled = 1;
    assert_int_not_equal(ops->capabilities(in) & COFFER_CAP_RETENTION, 0);
    assert_non_null(ops->server_time);
    assert_non_null(ops->object_retention);
    assert_non_null(ops->set_retention);
    assert_non_null(ops->remove_ex);
    assert_non_null(ops->reader_open_version_range);

    /* bad arguments are refused before any request */
    void *w = NULL;
    coffer_write_opts o = {.struct_size = sizeof o, .lock_mode = 9, .retain_until = 1};
    in->abort_uploads_after = 0;
    assert_int_equal(ops->writer_open(in, "x", &o, &w), COFFER_ERR_INVALID);
    o.lock_mode = COFFER_LOCK_GOVERNANCE;
    o.retain_until = 0;
    assert_int_equal(ops->writer_open(in, "x", &o, &w), COFFER_ERR_INVALID);
    assert_null(w);
    in->lock_enabled = 0;
    o.retain_until = 1796424008;
    assert_int_equal(ops->writer_open(in, "x", &o, &w), COFFER_ERR_UNSUPPORTED);
    assert_non_null(strstr(f->mh.last_error, "no object lock"));
    /* a 1.1 caller's shorter struct carries no retention */
    o.struct_size = offsetof(coffer_write_opts, lock_mode);
    assert_int_equal(ops->writer_open(in, "x", &o, &w), COFFER_OK);
    ops->writer_abort(w);
    assert_int_equal(ops->set_retention(in, "x", NULL, COFFER_LOCK_NONE, 1796424008, 0),
                     COFFER_ERR_INVALID);
    assert_int_equal(ops->remove_ex(in, "x", "", 0), COFFER_ERR_INVALID);
    assert_int_equal(ops->object_retention(in, "x", "", &(coffer_lock_mode){0}, &(int64_t){0}),
                     COFFER_ERR_INVALID);
    assert_int_equal(ops->reader_open_version_range(in, "x", NULL, 0, 0, &w), COFFER_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigv4_suite),
        cmocka_unit_test(test_sigv4_s3_examples),
        cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_xml),
        cmocka_unit_test(test_retry_policy),
        cmocka_unit_test(test_status_map),
        cmocka_unit_test_setup_teardown(test_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
        cmocka_unit_test(test_retention_format),
        cmocka_unit_test(test_retention_headers),
        cmocka_unit_test(test_retention_errors),
        cmocka_unit_test_setup_teardown(test_retention_messages, setup, teardown),
    };
    return cmocka_run_group_tests_name("storage_s3 (no server)", tests, NULL, NULL);
}
