/* ${VAR}, ${VAR:-default} and $$ in policy values. */
#include "policy/policy.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

/* cf_buf_append would memcpy into a NULL buffer for n == 0. */
static void put(cf_buf *b, const char *s, size_t n)
{
    if (n)
        cf_buf_append(b, s, n);
}

static int name_start(char c)
{
    return isalpha((unsigned char)c) || c == '_';
}

static int name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* s points just after ":-"; return the index of the '}' closing the
 * reference (nested ${...} and $$ inside the default are skipped), or -1. */
static long default_end(const char *s)
{
    int depth = 0;
    for (long i = 0; s[i]; i++) {
        if (s[i] == '$' && (s[i + 1] == '$' || s[i + 1] == '{')) {
            if (s[i + 1] == '{')
                depth++;
            i++;
        } else if (s[i] == '}') {
            if (depth == 0)
                return i;
            depth--;
        }
    }
    return -1;
}

char *cf_expand_env(const char *s)
{
    cf_buf out = {0};
    size_t i = 0;
    while (s[i]) {
        if (s[i] != '$' || (s[i + 1] != '$' && s[i + 1] != '{')) {
            cf_buf_append(&out, &s[i], 1); /* a lone $ stays as it is */
            i++;
            continue;
        }
        if (s[i + 1] == '$') {
            cf_buf_append(&out, "$", 1);
            i += 2;
            continue;
        }
        size_t start = i + 2, j = start;
        if (!name_start(s[j])) {
            cf_buf_free(&out);
            cf_fail(s[j] == '}'
                        ? "empty variable name in '${}'"
                        : "invalid variable name after '${': names are letters, digits and '_', "
                          "not starting with a digit (write $$ for a literal $)");
            return NULL;
        }
        while (name_char(s[j]))
            j++;
        char *name = cf_strndup(s + start, j - start);
        if (s[j] == '}') {
            const char *v = getenv(name);
            if (!v) {
                cf_fail("environment variable %s is not set (use ${%s:-default} to give a default)",
                        name, name);
                free(name);
                cf_buf_free(&out);
                return NULL;
            }
            put(&out, v, strlen(v));
            i = j + 1;
        } else if (s[j] == ':' && s[j + 1] == '-') {
            long e = default_end(s + j + 2);
            if (e < 0) {
                cf_fail("unterminated ${%s:-...}: missing '}'", name);
                free(name);
                cf_buf_free(&out);
                return NULL;
            }
            const char *v = getenv(name);
            if (v && *v) {
                put(&out, v, strlen(v));
            } else {
                char *raw = cf_strndup(s + j + 2, (size_t)e);
                char *d = cf_expand_env(raw);
                free(raw);
                if (!d) {
                    free(name);
                    cf_buf_free(&out);
                    return NULL;
                }
                put(&out, d, strlen(d));
                free(d);
            }
            i = j + 2 + (size_t)e + 1;
        } else {
            cf_fail(s[j] ? "invalid reference ${%s...: expected '}' or ':-' after the variable name"
                         : "unterminated ${%s: missing '}'",
                    name);
            free(name);
            cf_buf_free(&out);
            return NULL;
        }
        free(name);
    }
    cf_buf_append(&out, "", 1);
    char *r = (char *)out.data;
    return r;
}
