/*
 * storage "s3": object lock retention of single objects.
 *
 *   server_time       HEAD of the bucket; its Date header
 *   object_retention  HEAD of the object (?versionId=); the headers
 *                     x-amz-object-lock-mode and -retain-until-date
 *   set_retention     PUT ?retention (&versionId=) with a <Retention>
 *                     document and Content-MD5; with
 *                     COFFER_REMOVE_BYPASS_GOVERNANCE also
 *                     x-amz-bypass-governance-retention: true
 *
 * Writers put the same two lock headers on a single PUT or on
 * CreateMultipartUpload (write.c); remove_ex is beside remove (storage.c).
 *
 * Retention dates come from the server's clock: server_time reads it
 * afresh on each call, nothing is cached.
 */
#include "s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- pure helpers ---------------------------------------------------------------- */

const char *s3_lock_mode_name(uint32_t mode)
{
    switch (mode) {
    case COFFER_LOCK_GOVERNANCE:
        return "GOVERNANCE";
    case COFFER_LOCK_COMPLIANCE:
        return "COMPLIANCE";
    default:
        return NULL;
    }
}

coffer_lock_mode s3_lock_mode_parse(const char *s)
{
    if (s && strcasecmp(s, "GOVERNANCE") == 0)
        return COFFER_LOCK_GOVERNANCE;
    if (s && strcasecmp(s, "COMPLIANCE") == 0)
        return COFFER_LOCK_COMPLIANCE;
    return COFFER_LOCK_NONE;
}

void s3_iso8601(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm)) {
        snprintf(out, 32, "1970-01-01T00:00:00Z");
        return;
    }
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int64_t s3_parse_http_date(const char *s)
{
    if (!s || !*s)
        return 0;
    time_t t = curl_getdate(s, NULL);
    return t > 0 ? (int64_t)t : 0;
}

static int has_word(const char *s, const char *w)
{
    size_t n = strlen(w);
    for (; s && *s; s++)
        if (strncasecmp(s, w, n) == 0)
            return 1;
    return 0;
}

int s3_lock_refusal(long status, const char *code, const char *msg)
{
    if (status != 403 && status != 400 && status != 409)
        return 0;
    if (code && strcmp(code, "ObjectLocked") == 0)
        return 1;
    if (status != 403 || !msg || !*msg)
        return 0; /* an empty message is a policy's denial: COFFER_ERR_AUTH */
    /* RGW: "forbidden by object lock", "proposed retain-until date shortens
     * an existing retention period and governance bypass check failed";
     * AWS: "Access Denied because object protected by object lock." */
    return has_word(msg, "object lock") || has_word(msg, "retention") ||
           has_word(msg, "retain-until") || has_word(msg, "objectlock");
}

void s3_retention_body(s3_str *out, coffer_lock_mode mode, int64_t until)
{
    char date[32];
    s3_iso8601(until, date);
    const char *m = s3_lock_mode_name(mode);
    s3_str_addf(out,
                "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>%s</Mode>"
                "<RetainUntilDate>%s</RetainUntilDate></Retention>",
                m ? m : "", date);
}

/* ---- operations ---------------------------------------------------------------- */

coffer_status s3_server_time(void *instance, int64_t *now)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    s3_req rq = {.method = "HEAD"};
    s3_resp rs;
    s3_resp_init(&rs, 0);
    coffer_status st = s3_request(in, &rq, &rs);
    if (st)
        st = s3_fail(in, st, "HEAD (bucket, for the server's time)", NULL, &rs);
    else if (rs.date <= 0)
        st = in->host->error(in->h, COFFER_ERR_FAILED,
                             "S3 HEAD %s: the answer has no readable Date header, so the "
                             "server's time is unknown",
                             in->bucket);
    else
        *now = rs.date;
    s3_resp_free(&rs);
    return st;
}

/* HEAD of okey (one version when vid): 0 or a status, rs filled; no
 * host->error. */
static coffer_status head_lock(s3_instance *in, const char *okey, const char *vid, s3_resp *rs)
{
    s3_req rq = {.method = "HEAD", .okey = okey};
    if (vid)
        s3_req_query(&rq, "versionId", vid);
    s3_resp_init(rs, 0);
    return s3_request(in, &rq, rs);
}

static coffer_status bad_version(s3_instance *in, const char *version_id)
{
    if (version_id && !*version_id)
        return in->host->error(in->h, COFFER_ERR_INVALID, "empty version id");
    return COFFER_OK;
}

coffer_status s3_object_retention(void *instance, const char *key, const char *version_id,
                                  coffer_lock_mode *mode, int64_t *until)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    coffer_status st = bad_version(in, version_id);
    if (st)
        return st;
    char *okey = s3_object_key(in, key, &st);
    if (!okey)
        return st;
    s3_resp rs;
    st = head_lock(in, okey, version_id, &rs);
    if (st == COFFER_ERR_NOT_FOUND || (st && version_id && rs.status == 405))
        /* 405: the version is a delete marker, which holds no retention */
        st = version_id ? in->host->error(in->h, COFFER_ERR_NOT_FOUND,
                                          "no version %s of object %s (s3://%s/%s)", version_id,
                                          key, in->bucket, okey)
                        : in->host->error(in->h, COFFER_ERR_NOT_FOUND, "no object %s (s3://%s/%s)",
                                          key, in->bucket, okey);
    else if (st)
        st = s3_fail(in, st, "HEAD (retention of)", okey, &rs);
    else {
        *mode = s3_lock_mode_parse(rs.lock_mode);
        *until = *mode != COFFER_LOCK_NONE ? s3_parse_iso8601(rs.lock_until) : 0;
        if (*mode != COFFER_LOCK_NONE && *until <= 0)
            st = in->host->error(in->h, COFFER_ERR_FAILED,
                                 "S3 HEAD %s/%s: retention %s with an unreadable date '%s'",
                                 in->bucket, okey, rs.lock_mode, rs.lock_until);
    }
    s3_resp_free(&rs);
    free(okey);
    return st;
}

coffer_status s3_put_retention(s3_instance *in, const char *okey, const char *version_id,
                               coffer_lock_mode mode, int64_t until, uint32_t flags, s3_resp *rs)
{
    s3_str body = {0};
    s3_retention_body(&body, mode, until);
    s3_req rq = {
        .method = "PUT", .okey = okey, .body = body.s, .body_len = body.len, .content_md5 = 1};
    s3_req_query(&rq, "retention", NULL);
    if (version_id)
        s3_req_query(&rq, "versionId", version_id);
    s3_req_header(&rq, "content-type", "application/xml");
    if (flags & COFFER_REMOVE_BYPASS_GOVERNANCE)
        s3_req_header(&rq, "x-amz-bypass-governance-retention", "true");
    s3_resp_init(rs, 64 * 1024);
    coffer_status st = s3_request(in, &rq, rs);
    s3_str_free(&body);
    return st;
}

coffer_status s3_set_retention(void *instance, const char *key, const char *version_id,
                               coffer_lock_mode mode, int64_t until, uint32_t flags)
{
    s3_instance *in = instance;
    s3_check_magic(in, COFFER_MAGIC_INSTANCE, "instance");
    coffer_status st = bad_version(in, version_id);
    if (st)
        return st;
    if (!s3_lock_mode_name(mode) || until <= 0)
        return in->host->error(in->h, COFFER_ERR_INVALID,
                               "set_retention of %s: mode %d until %lld is not a retention", key,
                               (int)mode, (long long)until);
    char *okey = s3_object_key(in, key, &st);
    if (!okey)
        return st;
    s3_resp rs;
    st = s3_put_retention(in, okey, version_id, mode, until, flags, &rs);
    char want[32];
    s3_iso8601(until, want);
    char vdesc[300] = "";
    if (version_id)
        snprintf(vdesc, sizeof vdesc, " version %s", version_id);
    if (st == COFFER_ERR_LOCKED) {
        /* name the retention in place when it can be read */
        char have[96] = "an existing retention";
        s3_resp hs;
        if (head_lock(in, okey, version_id, &hs) == COFFER_OK && hs.lock_mode[0]) {
            /* RGW writes nanoseconds: "2026-12-05T01:54:31.000000000Z" */
            int64_t t = s3_parse_iso8601(hs.lock_until);
            char d[32];
            s3_iso8601(t, d);
            snprintf(have, sizeof have, "%s until %s", hs.lock_mode, t > 0 ? d : hs.lock_until);
        }
        s3_resp_free(&hs);
        st = in->host->error(
            in->h, COFFER_ERR_LOCKED,
            "object %s%s (s3://%s/%s): retention %s until %s refused: it holds "
            "%s, which may only be extended%s (%s)",
            key, vdesc, in->bucket, okey, s3_lock_mode_name(mode), want, have,
            (flags & COFFER_REMOVE_BYPASS_GOVERNANCE) ? "" : " without the governance bypass",
            rs.err_msg[0] ? rs.err_msg : rs.err_code);
    } else if (st == COFFER_ERR_NOT_FOUND) {
        st = in->host->error(in->h, COFFER_ERR_NOT_FOUND, "no object %s%s (s3://%s/%s)", key, vdesc,
                             in->bucket, okey);
    } else if (st) {
        st = s3_fail(in, st, "PUT ?retention", okey, &rs);
    }
    s3_resp_free(&rs);
    free(okey);
    return st;
}
