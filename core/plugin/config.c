#include "plugin/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/util.h"

coffer_config *cf_config_new(void)
{
    return cf_calloc(1, sizeof(coffer_config));
}

static void item_clear(cf_config_item *it)
{
    free(it->name);
    free(it->value);
    for (size_t i = 0; i < it->nitems; i++)
        free(it->items[i]);
    free(it->items);
}

void cf_config_free(coffer_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        item_clear(&c->items[i]);
    free(c->items);
    free(c);
}

cf_config_item *cf_config_find(const coffer_config *c, const char *name)
{
    if (!c)
        return NULL;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->items[i].name, name) == 0)
            return &c->items[i];
    return NULL;
}

static cf_config_item *add(coffer_config *c, const char *name)
{
    c->items = cf_realloc(c->items, (c->n + 1) * sizeof *c->items);
    cf_config_item *it = &c->items[c->n++];
    memset(it, 0, sizeof *it);
    it->name = cf_strdup(name);
    return it;
}

void cf_config_remove(coffer_config *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->items[i].name, name) == 0) {
            item_clear(&c->items[i]);
            memmove(&c->items[i], &c->items[i + 1], (c->n - i - 1) * sizeof *c->items);
            c->n--;
            return;
        }
}

void cf_config_set(coffer_config *c, const char *name, const char *value, int line, int col)
{
    cf_config_item *it = cf_config_find(c, name);
    if (it) {
        char *n = it->name;
        it->name = NULL;
        item_clear(it);
        memset(it, 0, sizeof *it);
        it->name = n;
    } else {
        it = add(c, name);
    }
    it->value = cf_strdup(value);
    it->line = line;
    it->col = col;
}

void cf_config_list_add(coffer_config *c, const char *name, const char *item, int line, int col)
{
    cf_config_item *it = cf_config_find(c, name);
    if (!it) {
        it = add(c, name);
        it->is_list = 1;
        it->line = line;
        it->col = col;
    }
    if (!it->is_list) {
        free(it->value);
        it->value = NULL;
        it->is_list = 1;
    }
    it->items = cf_realloc(it->items, (it->nitems + 1) * sizeof(char *));
    it->items[it->nitems++] = cf_strdup(item);
}

coffer_config *cf_config_dup(const coffer_config *c)
{
    coffer_config *d = cf_config_new();
    for (size_t i = 0; c && i < c->n; i++) {
        const cf_config_item *it = &c->items[i];
        if (it->is_list) {
            cf_config_item *n = add(d, it->name);
            n->is_list = 1;
            n->line = it->line;
            n->col = it->col;
            for (size_t j = 0; j < it->nitems; j++)
                cf_config_list_add(d, it->name, it->items[j], it->line, it->col);
        } else {
            cf_config_set(d, it->name, it->value, it->line, it->col);
        }
    }
    return d;
}

const char *cf_config_get(const coffer_config *c, const char *name)
{
    cf_config_item *it = cf_config_find(c, name);
    if (!it)
        return NULL;
    if (it->is_list)
        return it->nitems ? it->items[0] : NULL;
    return it->value;
}

size_t cf_config_list_len(const coffer_config *c, const char *name)
{
    cf_config_item *it = cf_config_find(c, name);
    if (!it)
        return 0;
    if (!it->is_list)
        return it->value ? 1 : 0;
    return it->nitems;
}

const char *cf_config_list_item(const coffer_config *c, const char *name, size_t i)
{
    cf_config_item *it = cf_config_find(c, name);
    if (!it)
        return NULL;
    if (!it->is_list)
        return i == 0 ? it->value : NULL;
    return i < it->nitems ? it->items[i] : NULL;
}

int64_t cf_config_get_int(const coffer_config *c, const char *name, int64_t dflt)
{
    const char *v = cf_config_get(c, name);
    int64_t out;
    if (!v)
        return dflt;
    if (cf_parse_int(v, &out) == 0 || cf_parse_size(v, &out) == 0)
        return out;
    return dflt;
}

int cf_config_get_bool(const coffer_config *c, const char *name, int dflt)
{
    const char *v = cf_config_get(c, name);
    int out;
    if (!v || cf_parse_bool(v, &out) != 0)
        return dflt;
    return out;
}

int cf_parse_bool(const char *s, int *out)
{
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < CF_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

int cf_parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

int cf_parse_size(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return -1;
    while (*end == ' ')
        end++;
    int64_t mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 0: break;
    case 'K': mul = 1LL << 10; end++; break;
    case 'M': mul = 1LL << 20; end++; break;
    case 'G': mul = 1LL << 30; end++; break;
    case 'T': mul = 1LL << 40; end++; break;
    default: return -1;
    }
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end)
        return -1;
    if (v > INT64_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}
