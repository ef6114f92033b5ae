/* A file database driver that misbehaves on request, for the core's
 * refusals. Option `mode`:
 *   good       restores data.bin and claims it (the control case)
 *   unclaimed  restores data.bin and stray.log but claims nothing
 *   outside    claims ../escape.bin
 *   nobit      has owned_paths but leaves COFFER_DBCAP_OWNS_FILES unset
 *   reject     validate refuses the option `mode`
 * Built only for the tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coffer/coffer.h>

typedef struct inst {
    const coffer_host *host;
    coffer_hctx *h;
    char mode[32];
} inst;

static const coffer_option options[] = {
    {"mode", COFFER_OPT_STRING, "good", 0, 0, "how to misbehave"},
    {"token", COFFER_OPT_STRING, NULL, 0, 1, "a secret (only to show [secret] in --describe)"},
    {"token_env", COFFER_OPT_STRING, NULL, 0, 0, "variable holding token"},
    {NULL, 0, NULL, 0, 0, NULL},
};

static coffer_status m_new(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                           void **out)
{
    inst *in = calloc(1, sizeof *in);
    if (!in)
        return host->error(h, COFFER_ERR_FATAL, "out of memory");
    in->host = host;
    in->h = h;
    const char *m = host->config_get(cfg, "mode");
    snprintf(in->mode, sizeof in->mode, "%s", m ? m : "good");
    *out = in;
    return COFFER_OK;
}

static void m_free(void *p)
{
    free(p);
}

static uint32_t m_caps(void *p)
{
    inst *in = p;
    return strcmp(in->mode, "nobit") == 0 ? 0 : COFFER_DBCAP_OWNS_FILES;
}

static coffer_status m_dump(void *p, coffer_dump_sink *sink)
{
    (void)p;
    void *s;
    coffer_status st = sink->stream_open(sink, "data", &s);
    if (st != COFFER_OK)
        return st;
    st = sink->stream_write(s, "payload\n", 8);
    if (st == COFFER_OK)
        st = sink->stream_close(s);
    return st == COFFER_OK ? sink->meta(sink, "snapshot", "test") : st;
}

static coffer_status write_file(inst *in, const char *root, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return in->host->error(in->h, COFFER_ERR_IO, "cannot create %s", path);
    fputs("payload\n", f);
    fclose(f);
    return COFFER_OK;
}

static coffer_status m_restore(void *p, coffer_dump_source *src, const coffer_restore_opts *o)
{
    inst *in = p;
    (void)src;
    coffer_status st = write_file(in, o->root, "data.bin");
    if (st == COFFER_OK && strcmp(in->mode, "unclaimed") == 0)
        st = write_file(in, o->root, "stray.log");
    /* Where the files end up (ABI 1.1), for the log. */
    if (o->struct_size >= COFFER_HAS_MEMBER_SIZE(coffer_restore_opts, final_root) && o->final_root)
        in->host->log(in->h, COFFER_LOG_INFO, "restored for %s", o->final_root);
    return st;
}

static coffer_status m_verify(void *p, coffer_dump_source *src, const coffer_restore_opts *o,
                              coffer_check_cb cb, void *ud)
{
    (void)p;
    (void)src;
    (void)o;
    cb(ud, 1, "data", NULL);
    return COFFER_OK;
}

static size_t m_owned(void *p, const char **paths, size_t max)
{
    inst *in = p;
    if (max < 1 || strcmp(in->mode, "unclaimed") == 0)
        return 0;
    paths[0] = strcmp(in->mode, "outside") == 0 ? "../escape.bin" : "data.bin";
    return 1;
}

static coffer_status m_validate(const coffer_host *host, coffer_hctx *h, const coffer_config *cfg,
                                const char **bad_option)
{
    const char *m = host->config_get(cfg, "mode");
    if (m && strcmp(m, "reject") == 0) {
        *bad_option = "mode";
        return host->error(h, COFFER_ERR_INVALID, "'reject' is refused by this driver");
    }
    return COFFER_OK;
}

static const coffer_database_ops ops = {
    .struct_size = sizeof(coffer_database_ops),
    .instance_new = m_new,
    .instance_free = m_free,
    .capabilities = m_caps,
    .dump = m_dump,
    .restore = m_restore,
    .verify = m_verify,
    .owned_paths = m_owned,
    .validate = m_validate,
};

static const coffer_plugin desc = {
    COFFER_PLUGIN_HEADER,
    .kind = COFFER_KIND_DATABASE,
    .name = "misdb",
    .version = "0",
    .description = "test file database that misbehaves on request",
    .threading = COFFER_THREADS_PER_INSTANCE,
    .options = options,
    .database = &ops,
};

COFFER_EXPORT const coffer_plugin *coffer_plugin_init(const coffer_host *host)
{
    (void)host;
    return &desc;
}
