/*
 * The XML replies the S3 driver reads (plugins/storage_s3/xml.c): error
 * bodies, and the documents walked the way storage.c and write.c walk
 * them: ListObjectsV2 and ListObjectVersions pages, versioning and object
 * lock configurations, the UploadId of a multipart upload. The input is
 * one reply body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3.h"

/* What the list loops do with each element. */
static void read_entry(const s3_xml_node *c)
{
    char tmp[96];
    char *k = s3_xml_strdup(c, "Key");
    char *vid = s3_xml_strdup(c, "VersionId");
    s3_xml_text(c, "Size", tmp, sizeof tmp);
    (void)strtoull(tmp, NULL, 10);
    s3_xml_text(c, "LastModified", tmp, sizeof tmp);
    (void)s3_parse_iso8601(tmp);
    s3_xml_text(c, "ETag", tmp, sizeof tmp);
    s3_xml_text(c, "IsLatest", tmp, sizeof tmp);
    (void)s3_xml_name(c);
    free(k);
    free(vid);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    char code[64], msg[256];
    s3_xml_error(buf, size, code, sizeof code, msg, sizeof msg);
    s3_xml *x = s3_xml_parse(buf, size);
    if (!x)
        return 0;
    s3_xml_node *r = s3_xml_root(x);
    /* ListObjectsV2 */
    for (s3_xml_node *c = s3_xml_next(r, NULL, "Contents"); c; c = s3_xml_next(r, c, "Contents"))
        read_entry(c);
    char trunc[16];
    s3_xml_text(r, "IsTruncated", trunc, sizeof trunc);
    free(s3_xml_strdup(r, "NextContinuationToken"));
    /* ListObjectVersions: versions and delete markers in order */
    for (s3_xml_node *c = s3_xml_next(r, NULL, NULL); c; c = s3_xml_next(r, c, NULL))
        if (strcmp(s3_xml_name(c), "Version") == 0 || strcmp(s3_xml_name(c), "DeleteMarker") == 0)
            read_entry(c);
    free(s3_xml_strdup(r, "NextKeyMarker"));
    free(s3_xml_strdup(r, "NextVersionIdMarker"));
    /* versioning, object lock, multipart */
    char v[32];
    s3_xml_text(r, "Status", v, sizeof v);
    s3_xml_text(r, "ObjectLockEnabled", v, sizeof v);
    s3_xml_node *dr = s3_xml_child(s3_xml_child(r, "Rule"), "DefaultRetention");
    if (dr) {
        s3_xml_text(dr, "Mode", v, sizeof v);
        s3_xml_text(dr, "Days", v, sizeof v);
        s3_xml_text(dr, "Years", v, sizeof v);
    }
    free(s3_xml_strdup(r, "UploadId"));
    /* A tiny buffer must still be terminated. */
    char one[1];
    s3_xml_text(r, "Key", one, sizeof one);
    s3_xml_text(r, "Key", one, 0);
    s3_xml_free(x);
    return 0;
}
