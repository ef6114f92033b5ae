#include "engine/monitor.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/run.h"
#include "util/util.h"

struct cf_watch {
    const cf_policy *p;
    char command[32];
    double t0;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- pings -------------------------------------------------------------- */

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return size * n;
}

/* The host of a URL, for messages: a ping URL often carries its check's
 * token in the path, which stays out of logs. */
static void url_host(const char *url, char *out, size_t len)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t n = strcspn(h, "/?#");
    /* user:password@ stays out too */
    for (size_t i = n; i > 0; i--)
        if (h[i - 1] == '@') {
            h += i;
            n -= i;
            break;
        }
    snprintf(out, len, "%.*s", (int)n, h);
}

static void ping(const cf_policy *p, const char *which, const char *url, const char *body)
{
    if (!url)
        return;
    char host[256];
    url_host(url, host, sizeof host);
    static int curl_ready; /* pings are sent from the main thread only */
    if (!curl_ready++)
        curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    if (!c) {
        cf_log(CF_LOG_WARN, "monitor: %s ping to %s: cannot start libcurl", which, host);
        return;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)p->monitor.ping_timeout);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)p->monitor.ping_timeout);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "coffer/" COFFER_VERSION);
    CURLcode r = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (r != CURLE_OK)
        cf_log(CF_LOG_WARN, "monitor: %s ping to %s failed: %s (the %s result is unchanged)", which,
               host, curl_easy_strerror(r), which);
    else if (code >= 400)
        cf_log(CF_LOG_WARN, "monitor: %s ping to %s answered HTTP %ld", which, host, code);
    else
        cf_log(CF_LOG_DEBUG, "monitor: %s ping to %s: HTTP %ld", which, host, code);
    curl_easy_cleanup(c);
}

/* ---- hooks -------------------------------------------------------------- */

static int hook(const cf_watch *w, const char *name, const char *cmd, char *const *env)
{
    if (!cmd)
        return 0;
    char what[64];
    snprintf(what, sizeof what, "hook '%s'", name);
    cf_log(CF_LOG_INFO, "%s: running `%s`", what, cmd);
    int st = cf_run_command(what, cmd, w->p->root, w->p->hooks.timeout, env);
    if (st < 0)
        cf_log(CF_LOG_WARN, "%s: %s", what, cf_error());
    else if (st != 0)
        cf_log(CF_LOG_WARN, "%s: `%s` exited with status %d", what, cmd, st);
    return st;
}

/* ---- metrics ------------------------------------------------------------ */

typedef struct metric {
    const char *name, *help;
} metric;

/* Every metric coffer writes, in file order. */
static const metric metrics[] = {
    {"coffer_backup_last_run_timestamp_seconds", "Start of the last backup (success or not)."},
    {"coffer_backup_last_success_timestamp_seconds", "Start of the last successful backup."},
    {"coffer_backup_last_status", "1 if the last backup succeeded, 0 if it failed."},
    {"coffer_backup_duration_seconds", "Duration of the last backup."},
    {"coffer_backup_files", "Files in the last set."},
    {"coffer_backup_bytes_read", "Logical bytes in the last set."},
    {"coffer_backup_bytes_added",
     "Bytes of new chunks the last backup added (before compression)."},
    {"coffer_backup_bytes_stored", "Bytes the last backup stored (after compression)."},
    {"coffer_backup_unreadable_files", "Paths the last set lacks because they could not be read."},
    {"coffer_backup_missing_references",
     "Paths the last set's database references and the set lacks (inconsistent when > 0)."},
    {"coffer_repository_sets", "Sets of this policy in the repository after the last backup."},
    {"coffer_repository_size_bytes", "Bytes of the repository's indexed packs, index objects and manifests after the last backup."},
    {"coffer_check_last_run_timestamp_seconds", "Start of the last repository check."},
    {"coffer_check_last_status", "1 if the last check found no problem, 0 otherwise."},
    {"coffer_check_problems", "Problems the last check found."},
};

/* The value of NAME{policy="P"} in an existing file, or NULL. */
static const char *old_value(char **lines, size_t n, const char *name, const char *label, char *buf,
                             size_t len)
{
    size_t nl = strlen(name), ll = strlen(label);
    for (size_t i = 0; i < n; i++) {
        const char *l = lines[i];
        if (strncmp(l, name, nl) == 0 && strncmp(l + nl, label, ll) == 0 && l[nl + ll] == ' ') {
            snprintf(buf, len, "%s", l + nl + ll + 1);
            buf[strcspn(buf, " \n")] = 0;
            return buf;
        }
    }
    return NULL;
}

int cf_metrics_update(const char *file, const char *policy, json_t *samples)
{
    /* Other policies may share the file: their lines are kept as they are. */
    char **lines = NULL;
    size_t n = 0;
    FILE *f = fopen(file, "r");
    if (f) {
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, f) > 0) {
            line[strcspn(line, "\n")] = 0;
            lines = cf_realloc(lines, (n + 1) * sizeof *lines);
            lines[n++] = cf_strdup(line);
        }
        free(line);
        fclose(f);
    }
    char *label = cf_asprintf("{policy=\"%s\"}", policy);
    char *tmp = cf_asprintf("%s.tmp-%ld", file, (long)getpid());
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!out) {
        rc = cf_fail_errno("metrics file %s: cannot write %s", file, tmp);
        if (fd >= 0)
            close(fd);
        goto done;
    }
    for (size_t m = 0; m < CF_ARRAY_LEN(metrics); m++) {
        const char *name = metrics[m].name;
        fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n", name, metrics[m].help, name);
        json_t *v = json_object_get(samples, name);
        char buf[64];
        const char *old = old_value(lines, n, name, label, buf, sizeof buf);
        if (json_is_number(v))
            fprintf(out, "%s%s %.17g\n", name, label, json_number_value(v));
        else if (old)
            fprintf(out, "%s%s %s\n", name, label, old);
        /* the same metric of the other policies in the file */
        size_t nl = strlen(name);
        for (size_t i = 0; i < n; i++)
            if (strncmp(lines[i], name, nl) == 0 && lines[i][nl] == '{' &&
                strncmp(lines[i] + nl, label, strlen(label)) != 0)
                fprintf(out, "%s\n", lines[i]);
    }
    if (fflush(out) != 0 || fsync(fileno(out)) != 0)
        rc = cf_fail_errno("metrics file %s: cannot write %s", file, tmp);
    if (fclose(out) != 0 && rc == 0)
        rc = cf_fail_errno("metrics file %s: cannot write %s", file, tmp);
    /* Atomic: the node exporter never reads half a file. */
    if (rc == 0 && rename(tmp, file) != 0)
        rc = cf_fail_errno("metrics file %s: cannot replace it", file);
    if (rc != 0)
        unlink(tmp);
done:
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
    free(label);
    free(tmp);
    return rc;
}

/* ---- the watch ---------------------------------------------------------- */

int cf_watch_begin(const cf_policy *p, const char *command, cf_watch **out)
{
    cf_watch *w = cf_calloc(1, sizeof *w);
    w->p = p;
    snprintf(w->command, sizeof w->command, "%s", command);
    w->t0 = now_s();
    *out = w;
    if (strcmp(command, "backup") != 0)
        return 0;
    char *body = cf_asprintf("coffer backup of policy '%s' started", p->name);
    ping(p, "start", p->monitor.ping_start, body);
    free(body);
    if (p->hooks.before) {
        char *env[] = {cf_asprintf("COFFER_POLICY=%s", p->name), "COFFER_COMMAND=backup", NULL};
        int st = hook(w, "before", p->hooks.before, env);
        free(env[0]);
        if (st != 0)
            return cf_fail("hook 'before' (`%s`) failed; the backup did not run", p->hooks.before);
    }
    return 0;
}

static json_int_t num(json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

void cf_watch_end(cf_watch *w, int exit_code, const char *error, json_t *summary,
                  const char *set_id)
{
    if (!w)
        return;
    const cf_policy *p = w->p;
    double dur = now_s() - w->t0;
    int ok = exit_code == 0;
    json_t *m = json_object();
    if (strcmp(w->command, "backup") == 0) {
        char *env[16];
        size_t k = 0;
        env[k++] = cf_asprintf("COFFER_POLICY=%s", p->name);
        env[k++] = cf_strdup("COFFER_COMMAND=backup");
        env[k++] = cf_asprintf("COFFER_STATUS=%s", ok ? "success" : "failure");
        env[k++] = cf_asprintf("COFFER_EXIT=%d", exit_code);
        env[k++] = cf_asprintf("COFFER_DURATION=%.3f", dur);
        if (set_id)
            env[k++] = cf_asprintf("COFFER_SET_ID=%s", set_id);
        if (error)
            env[k++] = cf_asprintf("COFFER_ERROR=%s", error);
        if (summary) {
            env[k++] = cf_asprintf("COFFER_FILES=%lld", (long long)num(summary, "files"));
            env[k++] = cf_asprintf("COFFER_BYTES=%lld", (long long)num(summary, "bytes"));
            env[k++] = cf_asprintf("COFFER_BYTES_ADDED=%lld", (long long)num(summary, "new_bytes"));
            env[k++] =
                cf_asprintf("COFFER_BYTES_STORED=%lld", (long long)num(summary, "stored_bytes"));
        }
        env[k] = NULL;
        hook(w, ok ? "on_success" : "on_failure", ok ? p->hooks.on_success : p->hooks.on_failure,
             env);
        hook(w, "after", p->hooks.after, env);
        for (size_t i = 0; i < k; i++)
            free(env[i]);

        char *body;
        if (ok) {
            body = cf_asprintf("coffer backup of policy '%s': set %s, %lld files, %lld bytes, "
                               "%lld new, %.1f s",
                               p->name, set_id ? set_id : "-", (long long)num(summary, "files"),
                               (long long)num(summary, "bytes"),
                               (long long)num(summary, "new_bytes"), dur);
        } else {
            char *tail = cf_log_tail(20);
            body = cf_asprintf("coffer backup of policy '%s' FAILED (exit %d): %s\n\nlast log "
                               "lines:\n%s",
                               p->name, exit_code, error ? error : "(no message)", tail);
            free(tail);
        }
        ping(p, ok ? "success" : "failure", ok ? p->monitor.ping_success : p->monitor.ping_failure,
             body);
        free(body);

        json_object_set_new(m, "coffer_backup_last_run_timestamp_seconds", json_real(w->t0));
        json_object_set_new(m, "coffer_backup_last_status", json_integer(ok));
        json_object_set_new(m, "coffer_backup_duration_seconds", json_real(dur));
        if (ok)
            json_object_set_new(m, "coffer_backup_last_success_timestamp_seconds",
                                json_real(w->t0));
        if (summary) { /* a set was written (complete or not) */
            json_object_set_new(m, "coffer_backup_unreadable_files",
                                json_integer(num(summary, "unreadable")));
            json_object_set_new(m, "coffer_backup_missing_references",
                                json_integer(num(summary, "missing_references")));
            static const char *const keys[][2] = {
                {"coffer_backup_files", "files"},
                {"coffer_backup_bytes_read", "bytes"},
                {"coffer_backup_bytes_added", "new_bytes"},
                {"coffer_backup_bytes_stored", "stored_bytes"},
            };
            for (size_t i = 0; i < CF_ARRAY_LEN(keys); i++)
                json_object_set_new(m, keys[i][0], json_integer(num(summary, keys[i][1])));
            json_t *repo = json_object_get(summary, "repository");
            if (repo) {
                json_object_set_new(m, "coffer_repository_sets", json_integer(num(repo, "sets")));
                json_object_set_new(m, "coffer_repository_size_bytes",
                                    json_integer(num(repo, "size_bytes")));
            }
        }
    } else if (strcmp(w->command, "check") == 0) {
        json_object_set_new(m, "coffer_check_last_run_timestamp_seconds", json_real(w->t0));
        json_object_set_new(m, "coffer_check_last_status", json_integer(ok));
        json_object_set_new(m, "coffer_check_problems",
                            json_integer(summary ? num(summary, "problem_count") : 0));
    }
    if (p->monitor.metrics_file && cf_metrics_update(p->monitor.metrics_file, p->name, m) != 0)
        cf_log(CF_LOG_WARN, "monitor: %s (the %s result is unchanged)", cf_error(), w->command);
    json_decref(m);
    free(w);
}
