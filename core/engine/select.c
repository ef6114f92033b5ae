/* Include and exclude patterns over a set's file paths (engine/select.h). */
#include "engine/select.h"

#include <fnmatch.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

typedef struct pat {
    char *full; /* COMPONENT/path */
    size_t hits;
} pat;

struct cf_select {
    char **files;
    size_t nfiles;
    pat *inc, *exc;
    size_t ninc, nexc;
    json_t *parents; /* "component/dir" of every directory above a chosen entry */
};

cf_select *cf_select_new(const char *const *files, size_t nfiles)
{
    cf_select *s = cf_calloc(1, sizeof *s);
    s->files = cf_calloc(nfiles + 1, sizeof(char *));
    for (size_t i = 0; i < nfiles; i++)
        s->files[i] = cf_strdup(files[i]);
    s->nfiles = nfiles;
    s->parents = json_object();
    return s;
}

void cf_select_free(cf_select *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nfiles; i++)
        free(s->files[i]);
    for (size_t i = 0; i < s->ninc; i++)
        free(s->inc[i].full);
    for (size_t i = 0; i < s->nexc; i++)
        free(s->exc[i].full);
    free(s->files);
    free(s->inc);
    free(s->exc);
    json_decref(s->parents);
    free(s);
}

static int is_files_comp(const cf_select *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->nfiles; i++)
        if (strlen(s->files[i]) == len && strncmp(s->files[i], name, len) == 0)
            return 1;
    return 0;
}

/* The pattern made COMPONENT/path; NULL with cf_error when refused. */
static char *qualify(const cf_select *s, const char *opt, const char *p)
{
    if (!*p)
        return cf_fail("%s: an empty path", opt), NULL;
    if (p[0] == '/')
        return cf_fail("%s %s: refused: paths are relative to the set (COMPONENT/path)", opt, p),
               NULL;
    for (const char *c = p; *c;) {
        size_t l = strcspn(c, "/");
        if (l == 2 && c[0] == '.' && c[1] == '.')
            return cf_fail("%s %s: refused: a '..' part leaves the set", opt, p), NULL;
        c += l;
        if (*c)
            c++;
    }
    char *t = cf_strdup(p);
    size_t n = strlen(t);
    while (n > 1 && t[n - 1] == '/')
        t[--n] = 0; /* "dir/" names dir */
    size_t first = strcspn(t, "/");
    if (is_files_comp(s, t, first))
        return t;
    if (s->nfiles == 1) {
        char *q = cf_asprintf("%s/%s", s->files[0], t);
        free(t);
        return q;
    }
    free(t);
    if (s->nfiles == 0)
        return cf_fail("%s %s: the set has no files component", opt, p), NULL;
    cf_fail("%s %s: name the component first (COMPONENT/path): the set has several files "
            "components",
            opt, p);
    return NULL;
}

static int add(cf_select *s, pat **v, size_t *n, const char *opt, const char *p)
{
    char *q = qualify(s, opt, p);
    if (!q)
        return -1;
    *v = cf_realloc(*v, (*n + 1) * sizeof **v);
    (*v)[(*n)++] = (pat){q, 0};
    return 0;
}

int cf_select_include(cf_select *s, const char *pattern)
{
    return add(s, &s->inc, &s->ninc, "--include", pattern);
}

int cf_select_exclude(cf_select *s, const char *pattern)
{
    return add(s, &s->exc, &s->nexc, "--exclude", pattern);
}

int cf_select_include_from(cf_select *s, const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return cf_fail_errno("--include-from %s: cannot read", file);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len == 0 || line[0] == '#')
            continue;
        /* literal paths: glob characters are escaped */
        cf_buf b = {0};
        for (ssize_t i = 0; i < len; i++) {
            if (strchr("*?[\\", line[i]))
                cf_buf_append(&b, "\\", 1);
            cf_buf_append(&b, &line[i], 1);
        }
        cf_buf_append(&b, "", 1);
        rc = add(s, &s->inc, &s->ninc, "--include-from", (char *)b.data);
        cf_buf_free(&b);
    }
    free(line);
    fclose(f);
    return rc;
}

size_t cf_select_count(const cf_select *s)
{
    return s->ninc;
}

int cf_select_pattern_takes(const char *pattern, const char *full)
{
    size_t n = strlen(full);
    char *buf = cf_strdup(full);
    int took = 0;
    for (size_t i = 0; i <= n && !took; i++) {
        if (i < n && full[i] != '/')
            continue;
        buf[i] = 0;
        took = fnmatch(pattern, buf, FNM_PATHNAME) == 0;
        buf[i] = full[i];
    }
    free(buf);
    return took;
}

static char *join(const char *component, const char *path)
{
    return strcmp(path, ".") == 0 ? cf_strdup(component) : cf_asprintf("%s/%s", component, path);
}

int cf_select_match(cf_select *s, const char *component, const char *path)
{
    char *full = join(component, path);
    int excluded = 0;
    for (size_t i = 0; i < s->nexc && !excluded; i++)
        excluded = cf_select_pattern_takes(s->exc[i].full, full);
    int taken = 0;
    for (size_t i = 0; i < s->ninc && !excluded; i++)
        if (cf_select_pattern_takes(s->inc[i].full, full)) {
            s->inc[i].hits++;
            taken = 1;
        }
    free(full);
    return taken;
}

void cf_select_note_chosen(cf_select *s, const char *component, const char *path)
{
    char *full = join(component, path);
    size_t cl = strlen(component);
    for (char *p = strrchr(full, '/'); p && (size_t)(p - full) > cl; p = strrchr(full, '/')) {
        *p = 0;
        if (json_object_get(s->parents, full))
            break;
        json_object_set_new(s->parents, full, json_true());
    }
    free(full);
}

int cf_select_is_parent(const cf_select *s, const char *component, const char *path)
{
    char *full = join(component, path);
    int r = json_object_get(s->parents, full) != NULL;
    free(full);
    return r;
}

const char *cf_select_unmatched(const cf_select *s)
{
    for (size_t i = 0; i < s->ninc; i++)
        if (!s->inc[i].hits)
            return s->inc[i].full;
    return NULL;
}

int cf_select_names_component(const cf_select *s, const char *component)
{
    size_t l = strlen(component);
    for (size_t i = 0; i < s->ninc; i++)
        if (strncmp(s->inc[i].full, component, l) == 0 &&
            (s->inc[i].full[l] == '/' || !s->inc[i].full[l]))
            return 1;
    return 0;
}
