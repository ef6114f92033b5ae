#include "engine/copy.h"

#include <stdlib.h>
#include <string.h>

#include "engine/manifest.h"
#include "engine/progress.h"
#include "engine/proof.h"
#include "plugin/host.h"
#include "util/util.h"

/* Chunk ids are comparable when both repositories derive them the same
 * way: plain SHA-256 of the plaintext. A keyed (encrypted) repository
 * derives its own, so every chunk is read and re-identified. */
static int same_ids(cf_repo *a, cf_repo *b)
{
    return cf_repo_id_scheme_equal(a, b);
}

/* The set's rehearsal records go along; losing one only costs a rehearsal. */
static void copy_proofs(cf_repo *src, cf_repo *dst, const char *id)
{
    if (cf_proof_copy(src, dst, id) != 0) {
        cf_log(CF_LOG_WARN, "set %s: its rehearsal records were not copied: %s", id, cf_error());
        cf_error_clear();
    }
}

int cf_copy_set(cf_repo *src, cf_repo *dst, const char *id, int *copied, uint64_t *bytes_sent)
{
    *copied = 0;
    char *key = cf_asprintf("sets/%s", id);
    coffer_object_stat st;
    if (cf_store_stat(cf_repo_store(dst), key, &st) == 0) {
        free(key);
        copy_proofs(src, dst, id); /* rehearsals since the last copy */
        return 0;                  /* already there */
    }
    free(key);
    cf_error_clear();
    cf_mreader *m;
    json_t *h;
    if (cf_manifest_open(src, id, &m, &h) != 0)
        return -1;
    cf_mwriter *w;
    if (cf_manifest_begin(&w) != 0) {
        cf_manifest_close(m);
        json_decref(h);
        return -1;
    }
    int same = same_ids(src, dst);
    cf_buf buf = {0};
    cf_entry e;
    int rc, aborted = 0;
    while ((rc = cf_manifest_next(m, &e)) == 1) {
        for (size_t i = 0; i < e.nchunks && rc == 1; i++) {
            if (cf_cancel_flag) {
                rc = cf_fail("cancelled");
                break;
            }
            if (same && cf_repo_has(dst, &e.chunks[i]))
                continue;
            if (cf_repo_get_chunk(src, &e.chunks[i], &buf) != 0) {
                cf_error_prefix("set %s: %s", id, e.path);
                rc = -1;
                break;
            }
            cf_id nid;
            cf_repo_hash(dst, buf.data, buf.len, &nid);
            int added = 0;
            if (cf_repo_put_chunk(dst, &nid, buf.data, buf.len, &added) != 0) {
                rc = -1;
                break;
            }
            if (added)
                *bytes_sent += buf.len;
            cf_progress_add(buf.len, 0);
            e.chunks[i] = nid;
        }
        if (rc == 1 && cf_manifest_add(w, &e) != 0)
            rc = -1;
        cf_entry_clear(&e);
        if (rc != 1)
            break;
    }
    cf_manifest_close(m);
    cf_buf_free(&buf);
    if (rc == 0)
        rc = cf_repo_flush(dst);
    if (rc == 0) {
        /* same header: the set keeps its id, time and totals */
        rc = cf_manifest_commit(w, dst, id, h);
        if (rc != 0) {
            char *key = cf_asprintf("sets/%s", id);
            rc = cf_repo_commit_failed(dst, key);
            free(key);
            aborted = 1;
        }
    }
    if (rc != 0 && !aborted)
        cf_repo_abort(dst);
    else
        *copied = 1;
    cf_manifest_free(w);
    json_decref(h);
    if (rc == 0)
        copy_proofs(src, dst, id);
    return rc == 0 ? 0 : -1;
}
