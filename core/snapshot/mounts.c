/*
 * /proc/self/mountinfo: which file system shows a path (for LVM: the
 * device and the directory of it mounted there; for messages: what a
 * path lies on), and mounts nested in a snapshotted tree, which a
 * snapshot of the outer file system would show empty.
 */
#include "snapshot/snapshot_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* One space-separated field, octal escapes (\040 \011 \012 \134) decoded. */
static char *take_field(const char **s)
{
    const char *p = *s;
    while (*p == ' ')
        p++;
    size_t n = strcspn(p, " \n");
    char *out = cf_malloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\' && i + 3 < n && p[i + 1] >= '0' && p[i + 1] <= '3' && p[i + 2] >= '0' &&
            p[i + 2] <= '7' && p[i + 3] >= '0' && p[i + 3] <= '7') {
            *o++ = (char)((p[i + 1] - '0') * 64 + (p[i + 2] - '0') * 8 + (p[i + 3] - '0'));
            i += 3;
        } else {
            *o++ = p[i];
        }
    }
    *o = 0;
    *s = p + n;
    return out;
}

void cf_fssnap_mounts_free(cf_fssnap_mount *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].root);
        free(m[i].point);
        free(m[i].fstype);
        free(m[i].source);
    }
    free(m);
}

int cf_fssnap_mounts_parse(const char *text, cf_fssnap_mount **out, size_t *nout)
{
    cf_fssnap_mount *m = NULL;
    size_t n = 0;
    int line = 0;
    for (const char *s = text; *s;) {
        const char *eol = strchr(s, '\n');
        size_t len = eol ? (size_t)(eol - s) : strlen(s);
        char *l = cf_strndup(s, len);
        s += len + (eol ? 1 : 0);
        line++;
        if (!*l) {
            free(l);
            continue;
        }
        /* id parent major:minor root point options [optional...] - type source super */
        const char *p = l;
        char *f[5];
        for (int i = 0; i < 5; i++)
            f[i] = take_field(&p);
        cf_fssnap_mount e;
        memset(&e, 0, sizeof e);
        int ok = sscanf(f[2], "%u:%u", &e.major, &e.minor) == 2 && f[3][0] && f[4][0];
        const char *sep = strstr(p, " - ");
        if (ok && sep) {
            p = sep + 3;
            e.fstype = take_field(&p);
            e.source = take_field(&p);
            e.root = f[3];
            e.point = f[4];
            f[3] = f[4] = NULL;
            ok = e.fstype[0] != 0;
        } else {
            ok = 0;
        }
        for (int i = 0; i < 5; i++)
            free(f[i]);
        free(l);
        if (!ok) {
            free(e.fstype);
            free(e.source);
            free(e.root);
            free(e.point);
            cf_fssnap_mounts_free(m, n);
            return cf_fail("/proc/self/mountinfo: line %d is not understood", line);
        }
        m = cf_realloc(m, (n + 1) * sizeof *m);
        m[n++] = e;
    }
    *out = m;
    *nout = n;
    return 0;
}

int cf_fssnap_mounts_load(cf_fssnap_mount **out, size_t *n)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return cf_fail_errno("/proc/self/mountinfo");
    cf_buf b = {0};
    char chunk[8192];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0)
        cf_buf_append(&b, chunk, r);
    int err = ferror(f);
    fclose(f);
    if (err) {
        cf_buf_free(&b);
        return cf_fail("/proc/self/mountinfo: read error");
    }
    cf_buf_append(&b, "", 1);
    int rc = cf_fssnap_mounts_parse((const char *)b.data, out, n);
    cf_buf_free(&b);
    return rc;
}

const cf_fssnap_mount *cf_fssnap_mount_of(const cf_fssnap_mount *m, size_t n, const char *path)
{
    const cf_fssnap_mount *best = NULL;
    size_t bl = 0;
    for (size_t i = 0; i < n; i++) {
        if (!cf_fssnap_under(path, m[i].point))
            continue;
        size_t l = strlen(m[i].point);
        if (!best || l >= bl) {
            best = &m[i];
            bl = l;
        }
    }
    return best;
}

const char *cf_fssnap_where(const cf_fssnap_mount *m, size_t n, const char *path)
{
    static _Thread_local char buf[1024];
    const cf_fssnap_mount *e = cf_fssnap_mount_of(m, n, path);
    if (!e)
        snprintf(buf, sizeof buf, "no mounted file system");
    else
        snprintf(buf, sizeof buf, "%s %s mounted at %s", e->fstype, e->source, e->point);
    return buf;
}

int cf_fssnap_check_nested(const cf_fssnap_req *rq, const cf_fssnap_mount *m, size_t n,
                           const char *what, const char *ignore)
{
    for (size_t i = 0; i < rq->n; i++) {
        const cf_fssnap_path *p = &rq->p[i];
        if (!p->exists || !p->is_dir)
            continue;
        for (size_t k = 0; k < n; k++) {
            if (strcmp(m[k].point, p->abs) == 0 || !cf_fssnap_under(m[k].point, p->abs))
                continue;
            if (ignore && cf_fssnap_under(m[k].point, ignore))
                continue;
            return cf_fail("%s: %s (%s %s) is mounted inside it, and %s would show it "
                           "empty; capture it in a component of its own, or leave out the "
                           "snapshot",
                           cf_fssnap_show(p, 0), m[k].point, m[k].fstype, m[k].source, what);
        }
    }
    return 0;
}
