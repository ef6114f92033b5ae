#include "policy/ytree.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util/util.h"

/* Deeper than any policy needs; bounds our recursion on hostile input. */
#define MAX_DEPTH 64

typedef struct builder {
    yaml_parser_t parser;
    cf_ydoc *doc;
    const char *file;
    const char *buf;
    size_t len;
} builder;

static int fail_yaml(builder *b)
{
    yaml_parser_t *ps = &b->parser;
    size_t line, col;
    if (ps->error == YAML_MEMORY_ERROR)
        return cf_fail("%s: out of memory while parsing YAML", b->file);
    if (ps->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset, not a mark. */
        size_t off = ps->problem_offset < b->len ? ps->problem_offset : b->len;
        line = 1;
        col = 1;
        for (size_t i = 0; i < off; i++) {
            if (b->buf[i] == '\n') {
                line++;
                col = 1;
            } else {
                col++;
            }
        }
        if (ps->problem_value != -1)
            return cf_fail("%s:%zu:%zu: invalid YAML: %s (byte 0x%02x)", b->file, line, col,
                           ps->problem ? ps->problem : "unreadable input",
                           ps->problem_value & 0xff);
        return cf_fail("%s:%zu:%zu: invalid YAML: %s", b->file, line, col,
                       ps->problem ? ps->problem : "unreadable input");
    }
    line = ps->problem_mark.line + 1;
    col = ps->problem_mark.column + 1;
    const char *problem = ps->problem ? ps->problem : "syntax error";
    if (ps->context)
        return cf_fail("%s:%zu:%zu: invalid YAML: %s (%s started at line %zu, column %zu)", b->file,
                       line, col, problem, ps->context, ps->context_mark.line + 1,
                       ps->context_mark.column + 1);
    return cf_fail("%s:%zu:%zu: invalid YAML: %s", b->file, line, col, problem);
}

static int next_event(builder *b, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&b->parser, ev))
        return fail_yaml(b);
    return 0;
}

static cf_yn *new_node(builder *b, cf_yn_kind kind, const yaml_event_t *ev)
{
    cf_ydoc *d = b->doc;
    cf_yn *n = cf_calloc(1, sizeof *n);
    n->kind = kind;
    n->line = (int)ev->start_mark.line + 1;
    n->col = (int)ev->start_mark.column + 1;
    if (d->nall == d->capall) {
        d->capall = d->capall ? 2 * d->capall : 32;
        d->all = cf_realloc(d->all, d->capall * sizeof *d->all);
    }
    d->all[d->nall++] = n;
    return n;
}

static void add_kid(cf_yn *parent, cf_yn *kid)
{
    if (parent->n == parent->cap) {
        parent->cap = parent->cap ? 2 * parent->cap : 8;
        parent->kids = cf_realloc(parent->kids, parent->cap * sizeof *parent->kids);
    }
    parent->kids[parent->n++] = kid;
}

static void add_anchor(cf_ydoc *d, const yaml_char_t *name, cf_yn *node)
{
    if (!name)
        return;
    if (d->nanchors == d->capanchors) {
        d->capanchors = d->capanchors ? 2 * d->capanchors : 8;
        d->anchor_names = cf_realloc(d->anchor_names, d->capanchors * sizeof *d->anchor_names);
        d->anchor_nodes = cf_realloc(d->anchor_nodes, d->capanchors * sizeof *d->anchor_nodes);
    }
    d->anchor_names[d->nanchors] = cf_strdup((const char *)name);
    d->anchor_nodes[d->nanchors] = node;
    d->nanchors++;
}

static cf_yn *find_anchor(const cf_ydoc *d, const char *name)
{
    /* YAML lets an anchor be redefined: the latest definition wins. */
    for (size_t i = d->nanchors; i > 0; i--)
        if (strcmp(d->anchor_names[i - 1], name) == 0)
            return d->anchor_nodes[i - 1];
    return NULL;
}

static int is_null_scalar(const yaml_event_t *ev)
{
    const char *tag = (const char *)ev->data.scalar.tag;
    const char *v = (const char *)ev->data.scalar.value;
    if (tag && strcmp(tag, YAML_NULL_TAG) == 0)
        return 1;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || tag)
        return 0;
    return v[0] == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

/* Build the node that starts with *ev (consumed here). */
static int build(builder *b, yaml_event_t *ev, int depth, cf_yn **out)
{
    cf_yn *n;
    int rc = 0;
    if (depth > MAX_DEPTH) {
        rc = cf_fail("%s:%zu:%zu: invalid YAML: nested more than %d levels deep", b->file,
                     ev->start_mark.line + 1, ev->start_mark.column + 1, MAX_DEPTH);
        yaml_event_delete(ev);
        return rc;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        if (strlen((const char *)ev->data.scalar.value) != ev->data.scalar.length) {
            rc = cf_fail("%s:%zu:%zu: invalid YAML: a value contains a NUL character", b->file,
                         ev->start_mark.line + 1, ev->start_mark.column + 1);
            break;
        }
        n = new_node(b, CF_YN_SCALAR, ev);
        n->str = cf_strdup((const char *)ev->data.scalar.value);
        n->null = is_null_scalar(ev);
        add_anchor(b->doc, ev->data.scalar.anchor, n);
        *out = n;
        break;
    case YAML_ALIAS_EVENT:
        n = find_anchor(b->doc, (const char *)ev->data.alias.anchor);
        if (!n) {
            rc =
                cf_fail("%s:%zu:%zu: invalid YAML: alias *%s refers to no complete anchor above it",
                        b->file, ev->start_mark.line + 1, ev->start_mark.column + 1,
                        (const char *)ev->data.alias.anchor);
            break;
        }
        *out = n;
        break;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int is_seq = ev->type == YAML_SEQUENCE_START_EVENT;
        yaml_event_type_t end = is_seq ? YAML_SEQUENCE_END_EVENT : YAML_MAPPING_END_EVENT;
        yaml_char_t *anchor =
            is_seq ? ev->data.sequence_start.anchor : ev->data.mapping_start.anchor;
        char *anchor_copy = anchor ? cf_strdup((const char *)anchor) : NULL;
        n = new_node(b, is_seq ? CF_YN_SEQ : CF_YN_MAP, ev);
        yaml_event_delete(ev);
        for (;;) {
            yaml_event_t kid_ev;
            cf_yn *kid = NULL; /* gcc -O3 cannot tell build() sets it when it returns 0 */
            if (next_event(b, &kid_ev) < 0) {
                free(anchor_copy);
                return -1;
            }
            if (kid_ev.type == end) {
                yaml_event_delete(&kid_ev);
                break;
            }
            if (build(b, &kid_ev, depth + 1, &kid) < 0) {
                free(anchor_copy);
                return -1;
            }
            add_kid(n, kid);
        }
        add_anchor(b->doc, (const yaml_char_t *)anchor_copy, n);
        free(anchor_copy);
        *out = n;
        return 0;
    }
    default:
        rc = cf_fail("%s:%zu:%zu: invalid YAML: unexpected event %d", b->file,
                     ev->start_mark.line + 1, ev->start_mark.column + 1, (int)ev->type);
        break;
    }
    yaml_event_delete(ev);
    return rc;
}

/* Read the next event and insist on its type. */
static int expect(builder *b, yaml_event_type_t type, yaml_event_t *ev)
{
    if (next_event(b, ev) < 0)
        return -1;
    if (ev->type != type) {
        int rc;
        if (ev->type == YAML_DOCUMENT_START_EVENT)
            rc = cf_fail("%s:%zu:%zu: invalid YAML: a policy file holds one YAML document; found a "
                         "second one",
                         b->file, ev->start_mark.line + 1, ev->start_mark.column + 1);
        else
            rc = cf_fail("%s:%zu:%zu: invalid YAML: unexpected event %d", b->file,
                         ev->start_mark.line + 1, ev->start_mark.column + 1, (int)ev->type);
        yaml_event_delete(ev);
        return rc;
    }
    return 0;
}

int cf_ydoc_parse(cf_ydoc *d, const char *file, const char *buf, size_t len)
{
    builder b = {.doc = d, .file = file, .buf = buf, .len = len};
    yaml_event_t ev;
    int rc = -1;
    memset(d, 0, sizeof *d);
    if (!yaml_parser_initialize(&b.parser))
        return cf_fail("%s: cannot initialise the YAML parser", file);
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)buf, len);

    if (expect(&b, YAML_STREAM_START_EVENT, &ev) < 0)
        goto out;
    yaml_event_delete(&ev);
    if (next_event(&b, &ev) < 0)
        goto out;
    if (ev.type == YAML_STREAM_END_EVENT) { /* empty file: no document */
        yaml_event_delete(&ev);
        rc = 0;
        goto out;
    }
    if (ev.type != YAML_DOCUMENT_START_EVENT) {
        yaml_event_delete(&ev);
        cf_fail("%s: invalid YAML: no document", file);
        goto out;
    }
    yaml_event_delete(&ev);
    if (next_event(&b, &ev) < 0)
        goto out;
    if (build(&b, &ev, 0, &d->root) < 0)
        goto out;
    if (expect(&b, YAML_DOCUMENT_END_EVENT, &ev) < 0)
        goto out;
    yaml_event_delete(&ev);
    if (expect(&b, YAML_STREAM_END_EVENT, &ev) < 0)
        goto out;
    yaml_event_delete(&ev);
    rc = 0;
out:
    yaml_parser_delete(&b.parser);
    if (rc < 0)
        cf_ydoc_free(d);
    return rc;
}

void cf_ydoc_free(cf_ydoc *d)
{
    for (size_t i = 0; i < d->nall; i++) {
        free(d->all[i]->str);
        free(d->all[i]->kids);
        free(d->all[i]);
    }
    free(d->all);
    for (size_t i = 0; i < d->nanchors; i++)
        free(d->anchor_names[i]);
    free(d->anchor_names);
    free(d->anchor_nodes);
    memset(d, 0, sizeof *d);
}

const char *cf_yn_kind_name(const cf_yn *n)
{
    switch (n->kind) {
    case CF_YN_SCALAR:
        return n->null ? "an empty value" : "a string";
    case CF_YN_SEQ:
        return "a list";
    case CF_YN_MAP:
        return "a mapping";
    }
    return "something else";
}

const cf_yn *cf_yn_get(const cf_yn *m, const char *key)
{
    if (!m || m->kind != CF_YN_MAP)
        return NULL;
    for (size_t i = 0; i + 1 < m->n; i += 2) {
        const cf_yn *k = m->kids[i];
        if (k->kind == CF_YN_SCALAR && strcmp(k->str, key) == 0)
            return m->kids[i + 1];
    }
    return NULL;
}
