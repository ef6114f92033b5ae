#include "plugin/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/config.h"
#include "plugin/host.h"

static int fail(cf_store *s, coffer_status st, const char *what, const char *key)
{
    char w[1200];
    snprintf(w, sizeof w, "%s%s%s", what, key ? " " : "", key ? key : "");
    cf_hctx_fail(s->hctx, st, w);
    return st ? (int)st : COFFER_ERR_FAILED;
}

int cf_store_new(const coffer_plugin *drv, const coffer_config *cfg, const char *label,
                 const char *root, cf_store **out)
{
    cf_store *s = cf_calloc(1, sizeof *s);
    s->ops = drv->storage;
    s->label = cf_strdup(label);
    s->hctx = cf_hctx_new(label, root);
    coffer_status st = s->ops->instance_new(cf_host_table(), s->hctx, cfg, &s->inst);
    if (st != COFFER_OK) {
        fail(s, st, "cannot open", NULL);
        cf_hctx_free(s->hctx);
        free(s->label);
        free(s);
        return st;
    }
    s->caps = s->ops->capabilities ? s->ops->capabilities(s->inst) : 0;
    *out = s;
    return COFFER_OK;
}

int cf_store_new_at(const coffer_plugin *drv, const coffer_config *cfg, const char *location,
                    const char *label, const char *root, cf_store **out)
{
    coffer_config *c = cf_config_dup(cfg);
    if (location && !cf_config_find(c, "location"))
        cf_config_set(c, "location", location, 0, 0);
    int st = cf_store_new(drv, c, label, root, out);
    if (st != COFFER_OK) {
        cf_config_free(c);
        return st;
    }
    (*out)->cfg = c; /* lives as long as the instance */
    return COFFER_OK;
}

void cf_store_free(cf_store *s)
{
    if (!s)
        return;
    if (s->inst)
        s->ops->instance_free(s->inst);
    cf_config_free(s->cfg);
    cf_hctx_free(s->hctx);
    free(s->label);
    free(s);
}

int cf_store_prepare(cf_store *s, int create)
{
    if (!s->ops->prepare)
        return COFFER_OK;
    coffer_status st = s->ops->prepare(s->inst, create);
    return st ? fail(s, st, "cannot prepare location", NULL) : 0;
}

int cf_store_writer_open(cf_store *s, const char *key, uint32_t flags, uint64_t size_hint, void **w)
{
    coffer_write_opts o = {.struct_size = sizeof o, .flags = flags, .size_hint = size_hint};
    coffer_status st = s->ops->writer_open(s->inst, key, &o, w);
    return st ? fail(s, st, "cannot create", key) : 0;
}

int cf_store_write(cf_store *s, void *w, const void *buf, size_t len)
{
    coffer_status st = s->ops->writer_write(w, buf, len);
    return st ? fail(s, st, "write failed", NULL) : 0;
}

int cf_store_commit(cf_store *s, void *w)
{
    coffer_status st = s->ops->writer_commit(w);
    return st ? fail(s, st, "commit failed", NULL) : 0;
}

void cf_store_abort(cf_store *s, void *w)
{
    if (w)
        s->ops->writer_abort(w);
}

int cf_store_reader_open(cf_store *s, const char *key, uint64_t off, uint64_t len, void **r)
{
    coffer_status st = s->ops->reader_open(s->inst, key, off, len, r);
    return st ? fail(s, st, "cannot read", key) : 0;
}

int cf_store_read(cf_store *s, void *r, void *buf, size_t len, size_t *got)
{
    size_t total = 0;
    while (total < len) {
        size_t n = 0;
        coffer_status st = s->ops->reader_read(r, (char *)buf + total, len - total, &n);
        if (st)
            return fail(s, st, "read failed", NULL);
        if (n == 0)
            break;
        total += n;
    }
    *got = total;
    return 0;
}

void cf_store_reader_close(cf_store *s, void *r)
{
    if (r)
        s->ops->reader_close(r);
}

int cf_store_stat(cf_store *s, const char *key, coffer_object_stat *st_out)
{
    memset(st_out, 0, sizeof *st_out);
    st_out->struct_size = sizeof *st_out;
    coffer_status st = s->ops->stat(s->inst, key, st_out);
    return st ? fail(s, st, "cannot stat", key) : 0;
}

int cf_store_list(cf_store *s, const char *prefix, coffer_list_cb cb, void *ud)
{
    coffer_status st = s->ops->list(s->inst, prefix, cb, ud);
    return st ? fail(s, st, "cannot list", prefix) : 0;
}

int cf_store_remove(cf_store *s, const char *key)
{
    coffer_status st = s->ops->remove(s->inst, key);
    return st ? fail(s, st, "cannot remove", key) : 0;
}

int cf_store_put(cf_store *s, const char *key, const void *buf, size_t len, uint32_t flags)
{
    void *w;
    int st = cf_store_writer_open(s, key, flags, len, &w);
    if (st)
        return st;
    if ((st = cf_store_write(s, w, buf, len)) != 0) {
        cf_store_abort(s, w);
        return st;
    }
    return cf_store_commit(s, w);
}

int cf_store_get_range(cf_store *s, const char *key, uint64_t off, uint64_t len, cf_buf *out)
{
    void *r;
    int st = cf_store_reader_open(s, key, off, len, &r);
    if (st)
        return st;
    out->len = 0;
    for (;;) {
        cf_buf_reserve(out, 1 << 16);
        /* fail() returns -1, but gcc -O3 cannot see that got is set on success only */
        size_t got = 0, want = out->cap - out->len;
        st = cf_store_read(s, r, out->data + out->len, want, &got);
        if (st) {
            cf_store_reader_close(s, r);
            return st;
        }
        out->len += got;
        if (got < want || (len && out->len >= len))
            break;
    }
    cf_store_reader_close(s, r);
    return 0;
}

int cf_store_get(cf_store *s, const char *key, cf_buf *out)
{
    return cf_store_get_range(s, key, 0, 0, out);
}
