/* core/engine/manifest.c: entries <-> JSON for every kind, names that are
 * not UTF-8, the spooled writer, the streaming reader over a repository,
 * and refusing damaged manifests instead of reading them short. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>

#include <zstd.h>

#include "../../fuzz/manifest_diff.h"
#include "engine/manifest.h"
#include "engine_test.h"

typedef struct fx {
    et_dir d;
    cf_store *st;
    mem_storage *ms;
    cf_repo *repo;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (et_dir_new(&f->d) != 0)
        return -1;
    f->repo = et_new_repo(&f->st, &f->ms);
    if (!f->repo)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    cf_repo_close(f->repo);
    cf_store_free(f->st);
    et_dir_free(&f->d);
    free(f);
    return 0;
}

/* ---- building and comparing entries ----------------------------------- */

static void fake_id(cf_id *id, uint64_t seed)
{
    et_fill_random(id->b, CF_ID_LEN, seed + 1);
}

static void set_xattrs(cf_entry *e)
{
    e->nxattrs = 3;
    e->xattrs = cf_calloc(3, sizeof(cf_xattr));
    static const uint8_t v0[] = {0, 1, 2, 0xff, 0};
    e->xattrs[0].name = cf_strdup("user.binary");
    e->xattrs[0].value = cf_malloc(sizeof v0);
    memcpy(e->xattrs[0].value, v0, sizeof v0);
    e->xattrs[0].len = sizeof v0;
    e->xattrs[1].name = cf_strdup("user.empty");
    e->xattrs[1].value = cf_malloc(1);
    e->xattrs[1].len = 0;
    e->xattrs[2].name = cf_strdup("security.selinux");
    e->xattrs[2].value = (uint8_t *)cf_strdup("system_u:object_r:var_t:s0");
    e->xattrs[2].len = strlen((char *)e->xattrs[2].value) + 1; /* with its NUL, as Linux has it */
}

static void base(cf_entry *e, cf_ent_kind k, const char *comp, const char *path, uint64_t seed)
{
    memset(e, 0, sizeof *e);
    e->kind = k;
    e->component = cf_strdup(comp);
    e->path = cf_strdup(path);
    e->mode = 0640 + (uint32_t)(seed % 8);
    e->uid = 1000 + (int64_t)seed;
    e->gid = 100;
    e->user = cf_strdup("alice");
    e->group = cf_strdup("staff");
    e->mtime = 1764213000 + (int64_t)seed;
    e->mtime_ns = 123456789;
}

static void make_file(cf_entry *e, const char *path, size_t nchunks, uint64_t seed)
{
    base(e, CF_ENT_FILE, "data", path, seed);
    e->size = 12345 + seed;
    e->nchunks = nchunks;
    e->chunks = cf_malloc((nchunks ? nchunks : 1) * sizeof(cf_id));
    for (size_t i = 0; i < nchunks; i++)
        fake_id(&e->chunks[i], seed * 100000 + i);
    e->dev = 2049;
    e->ino = 987654321 + seed;
    e->nlink = 1;
    e->ctime = 1764213001;
    e->ctime_ns = 999999999;
}

static int xattr_find(const cf_entry *e, const char *name)
{
    for (size_t i = 0; i < e->nxattrs; i++)
        if (strcmp(e->xattrs[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void same_str(const char *a, const char *b, const char *what)
{
    if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
        fail_msg("%s differs: \"%s\" vs \"%s\"", what, a ? a : "(null)", b ? b : "(null)");
}

/* Everything the format carries for the kind must survive. */
static void assert_same_entry(const cf_entry *a, const cf_entry *b)
{
    assert_int_equal(a->kind, b->kind);
    same_str(a->component, b->component, "component");
    if (a->kind == CF_ENT_META) {
        assert_true(json_equal(a->meta, b->meta));
        return;
    }
    same_str(a->path, b->path, "path");
    if (a->kind == CF_ENT_OBJECT) {
        same_str(a->version_id, b->version_id, "version_id");
        same_str(a->etag, b->etag, "etag");
        assert_int_equal(a->size, b->size);
        assert_int_equal(a->mtime, b->mtime);
        assert_int_equal(a->nchunks, b->nchunks);
        assert_int_equal(a->chunks == NULL, b->chunks == NULL);
        if (a->nchunks)
            assert_memory_equal(a->chunks, b->chunks, a->nchunks * sizeof(cf_id));
        return;
    }
    if (a->kind != CF_ENT_STREAM) {
        assert_int_equal(a->mode, b->mode);
        assert_int_equal(a->uid, b->uid);
        assert_int_equal(a->gid, b->gid);
        same_str(a->user, b->user, "user");
        same_str(a->group, b->group, "group");
        assert_int_equal(a->mtime, b->mtime);
        assert_int_equal(a->mtime_ns, b->mtime_ns);
    }
    if (a->kind == CF_ENT_FILE || a->kind == CF_ENT_STREAM) {
        assert_int_equal(a->size, b->size);
        assert_int_equal(a->nchunks, b->nchunks);
        if (a->nchunks)
            assert_memory_equal(a->chunks, b->chunks, a->nchunks * sizeof(cf_id));
    }
    if (a->kind == CF_ENT_FILE) {
        assert_int_equal(a->dev, b->dev);
        assert_int_equal(a->ino, b->ino);
        assert_int_equal(a->nlink, b->nlink);
        assert_int_equal(a->ctime, b->ctime);
        assert_int_equal(a->ctime_ns, b->ctime_ns);
    }
    if (a->kind == CF_ENT_SYMLINK || a->kind == CF_ENT_HARDLINK)
        same_str(a->target, b->target, "target");
    assert_int_equal(a->nxattrs, b->nxattrs);
    for (size_t i = 0; i < a->nxattrs; i++) {
        int k = xattr_find(b, a->xattrs[i].name);
        if (k < 0)
            fail_msg("xattr %s lost", a->xattrs[i].name);
        assert_int_equal(a->xattrs[i].len, b->xattrs[k].len);
        if (a->xattrs[i].len)
            assert_memory_equal(a->xattrs[i].value, b->xattrs[k].value, a->xattrs[i].len);
    }
}

/* to_json, through text (as stored), from_json. */
static void roundtrip(const cf_entry *in, cf_entry *out, json_t **as_json)
{
    json_t *j = cf_entry_to_json(in);
    assert_non_null(j);
    char *s = json_dumps(j, JSON_COMPACT);
    assert_non_null(s);
    assert_null(strchr(s, '\n')); /* one line */
    /* The line cf_manifest_add writes is these very bytes, whichever
     * writer it takes. */
    size_t glen;
    char *g = cf_entry_line(in, &glen);
    assert_non_null(g);
    if (glen != strlen(s) || memcmp(g, s, glen) != 0)
        fail_msg("written line differs:\n  tree: %s\n  line: %s", s, g);
    free(g);
    json_decref(j);
    json_error_t err;
    j = json_loads(s, 0, &err);
    assert_non_null(j);
    if (cf_entry_from_json(j, out) != 0)
        fail_msg("from_json: %s", cf_error());
    /* Both line readers read every written line, identically; a walk
     * entry's line of printable ASCII names is read as a plain line. */
    cf_entry fast, tree, plain;
    int rp = cf_entry_parse_plain(s, strlen(s), &plain);
    int printable = 1;
    for (const char *c = s; *c; c++)
        if (*c == '\\' || (unsigned char)*c > 0x7e)
            printable = 0;
    if ((in->kind == CF_ENT_FILE || in->kind == CF_ENT_DIR || in->kind == CF_ENT_SYMLINK) &&
        !in->nxattrs && printable && rp != 0)
        fail_msg("a line coffer writes is not read as plain (%d): %s", rp, s);
    if (rp == 0) {
        const char *d = cf_entry_diff(&plain, out);
        if (d)
            fail_msg("plain reader differs in %s: %s", d, s);
    }
    cf_entry_clear(&plain);
    if (cf_entry_parse_fast(s, strlen(s), &fast) != 0)
        fail_msg("fast reader: %s: %s", cf_error(), s);
    if (cf_entry_parse_tree(s, strlen(s), &tree) != 0)
        fail_msg("tree reader: %s: %s", cf_error(), s);
    assert_same_entry(out, &fast);
    const char *d = cf_entry_diff(&fast, &tree);
    if (d)
        fail_msg("readers differ in %s: %s", d, s);
    cf_entry_clear(&fast);
    cf_entry_clear(&tree);
    free(s);
    if (as_json)
        *as_json = j;
    else
        json_decref(j);
}

/* ---- entries <-> JSON -------------------------------------------------- */

static void test_roundtrip_every_kind(void **state)
{
    (void)state;
    cf_entry in[6], out;
    json_t *j;
    make_file(&in[0], "data/files/a.bin", 3, 1);
    set_xattrs(&in[0]);
    base(&in[1], CF_ENT_DIR, "data", "data/files", 2);
    set_xattrs(&in[1]);
    base(&in[2], CF_ENT_SYMLINK, "data", "data/current", 3);
    in[2].target = cf_strdup("../releases/v2/./x y");
    base(&in[3], CF_ENT_HARDLINK, "data", "data/files/a-link", 4);
    in[3].target = cf_strdup("data/files/a.bin");
    memset(&in[4], 0, sizeof in[4]);
    in[4].kind = CF_ENT_STREAM;
    in[4].component = cf_strdup("database");
    in[4].path = cf_strdup("main.sqlite");
    in[4].size = 1 << 20;
    in[4].nchunks = 2;
    in[4].chunks = cf_malloc(2 * sizeof(cf_id));
    fake_id(&in[4].chunks[0], 77);
    fake_id(&in[4].chunks[1], 78);
    memset(&in[5], 0, sizeof in[5]);
    in[5].kind = CF_ENT_META;
    in[5].component = cf_strdup("database");
    in[5].meta = json_pack("{s:s,s:s,s:s}", "server_version", "3.40.1", "rows.users", "12",
                           "snapshot", "sqlite online backup");

    static const char *types[] = {"file", "dir", "symlink", "hardlink", "stream", "meta"};
    for (int i = 0; i < 6; i++) {
        roundtrip(&in[i], &out, &j);
        assert_string_equal(json_string_value(json_object_get(j, "type")), types[i]);
        assert_string_equal(cf_ent_kind_name(in[i].kind), types[i]);
        assert_same_entry(&in[i], &out);
        cf_entry_clear(&out);
        json_decref(j);
    }
    /* Field names of the format (docs/repository-format.md, section 9). */
    j = cf_entry_to_json(&in[0]);
    assert_string_equal(json_string_value(json_object_get(j, "path")), "data/files/a.bin");
    assert_int_equal(json_integer_value(json_object_get(j, "mode")), in[0].mode);
    assert_int_equal(json_array_size(json_object_get(j, "chunks")), 3);
    char hex[2 * CF_ID_LEN + 1];
    cf_id_hex(&in[0].chunks[1], hex);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "chunks"), 1)), hex);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "xattrs"), "user.binary")),
                        "000102ff00");
    json_decref(j);
    j = cf_entry_to_json(&in[4]);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "main.sqlite");
    assert_null(json_object_get(j, "path"));
    assert_null(json_object_get(j, "mode"));
    json_decref(j);
    j = cf_entry_to_json(&in[5]);
    assert_null(json_object_get(j, "path"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "meta"), "rows.users")),
                        "12");
    json_decref(j);

    /* An empty file has an empty chunk list, not a missing one. */
    cf_entry empty;
    make_file(&empty, "data/empty", 0, 9);
    empty.size = 0;
    roundtrip(&empty, &out, &j);
    assert_true(json_is_array(json_object_get(j, "chunks")));
    assert_int_equal(out.nchunks, 0);
    assert_same_entry(&empty, &out);
    cf_entry_clear(&out);
    cf_entry_clear(&empty);
    json_decref(j);

    for (int i = 0; i < 6; i++)
        cf_entry_clear(&in[i]);
}

/* object_store entries: a version recorded in place, or a copied object. */
static void test_roundtrip_objects(void **state)
{
    (void)state;
    cf_entry v = {0}, c = {0}, out;
    json_t *j;
    v.kind = CF_ENT_OBJECT;
    v.component = cf_strdup("blobs");
    v.path = cf_strdup("users/42/avatar.png");
    v.version_id = cf_strdup("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY");
    v.etag = cf_strdup("\"9b2cf535f27731c974343645a3985328\"");
    v.size = 123456;
    v.mtime = 1764213000;
    roundtrip(&v, &out, &j);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "object");
    assert_string_equal(json_string_value(json_object_get(j, "key")), "users/42/avatar.png");
    assert_null(json_object_get(j, "chunks")); /* protected in place: no data in the repository */
    assert_same_entry(&v, &out);
    cf_entry_clear(&out);
    json_decref(j);

    c.kind = CF_ENT_OBJECT;
    c.component = cf_strdup("blobs");
    c.path = cf_strdup("k\xff\xfe");
    c.size = 10;
    c.nchunks = 2;
    c.chunks = cf_malloc(2 * sizeof(cf_id));
    fake_id(&c.chunks[0], 1);
    fake_id(&c.chunks[1], 2);
    roundtrip(&c, &out, &j);
    assert_string_equal(json_string_value(json_object_get(j, "key_hex")), "6bfffe");
    assert_null(json_object_get(j, "version_id"));
    assert_same_entry(&c, &out);
    assert_null(out.version_id);
    cf_entry_clear(&out);
    json_decref(j);
    cf_entry_clear(&v);
    cf_entry_clear(&c);
}

/* A stream's capture time is part of the format ("stream": ... "mtime"
 * (capture time)); sink_close in backup.c sets it. (Regression: it was
 * once written for non-stream entries only.) */
static void test_stream_keeps_capture_time(void **state)
{
    (void)state;
    cf_entry in = {0}, out;
    in.kind = CF_ENT_STREAM;
    in.component = cf_strdup("database");
    in.path = cf_strdup("dump");
    in.mtime = 1764213000;
    json_t *j;
    roundtrip(&in, &out, &j);
    int64_t written = json_integer_value(json_object_get(j, "mtime"));
    int64_t read = out.mtime;
    json_decref(j);
    cf_entry_clear(&out);
    cf_entry_clear(&in);
    assert_int_equal(written, 1764213000);
    assert_int_equal(read, 1764213000);
}

static void test_non_utf8_names(void **state)
{
    (void)state;
    cf_entry in, out;
    json_t *j;
    const char *bad = "data/\xff\xfe-caf\xe9/x";
    make_file(&in, bad, 1, 3);
    roundtrip(&in, &out, &j);
    assert_null(json_object_get(j, "path"));
    assert_string_equal(json_string_value(json_object_get(j, "path_hex")),
                        "646174612ffffe2d636166e92f78");
    assert_string_equal(out.path, bad);
    assert_same_entry(&in, &out);
    cf_entry_clear(&out);
    cf_entry_clear(&in);
    json_decref(j);

    /* Symlink target and hard link target too. */
    base(&in, CF_ENT_SYMLINK, "data", "data/l\xff", 1);
    in.target = cf_strdup("\xc3\x28/target"); /* invalid 2-byte sequence */
    roundtrip(&in, &out, &j);
    assert_non_null(json_object_get(j, "path_hex"));
    assert_non_null(json_object_get(j, "target_hex"));
    assert_null(json_object_get(j, "target"));
    assert_same_entry(&in, &out);
    cf_entry_clear(&out);
    cf_entry_clear(&in);
    json_decref(j);

    /* Stream names: name_hex. */
    memset(&in, 0, sizeof in);
    in.kind = CF_ENT_STREAM;
    in.component = cf_strdup("db");
    in.path = cf_strdup("table-\x80");
    roundtrip(&in, &out, &j);
    assert_non_null(json_object_get(j, "name_hex"));
    assert_string_equal(out.path, "table-\x80");
    cf_entry_clear(&out);
    cf_entry_clear(&in);
    json_decref(j);

    /* Quotes, backslashes and control bytes are escaped; a user name
     * that is not UTF-8 is left out. */
    make_file(&in, "data/q\"b\\s\tt\x01\x1f\x7f/x", 1, 4);
    roundtrip(&in, &out, &j);
    assert_string_equal(out.path, in.path);
    cf_entry_clear(&out);
    json_decref(j);
    free(in.user);
    in.user = cf_strdup("us\xe9r");
    j = cf_entry_to_json(&in);
    char *tree = json_dumps(j, JSON_COMPACT);
    size_t glen;
    char *line = cf_entry_line(&in, &glen);
    assert_string_equal(line, tree);
    assert_null(strstr(line, "\"user\""));
    free(tree);
    free(line);
    json_decref(j);
    cf_entry_clear(&in);

    /* Valid UTF-8 stays readable. */
    make_file(&in, "data/caf\xc3\xa9 \xe2\x82\xac.txt", 0, 1);
    roundtrip(&in, &out, &j);
    assert_string_equal(json_string_value(json_object_get(j, "path")), in.path);
    assert_null(json_object_get(j, "path_hex"));
    cf_entry_clear(&out);
    cf_entry_clear(&in);
    json_decref(j);
}

/* Linux xattr names are arbitrary bytes ("user." + anything but NUL).
 * (Regression: names were JSON object keys, which jansson refuses unless
 * UTF-8, so such an attribute was silently lost from the set.) */
static void test_xattr_name_not_utf8(void **state)
{
    (void)state;
    cf_entry in, out;
    make_file(&in, "data/x", 0, 1);
    in.nxattrs = 1;
    in.xattrs = cf_calloc(1, sizeof(cf_xattr));
    in.xattrs[0].name = cf_strdup("user.\xff");
    in.xattrs[0].value = (uint8_t *)cf_strdup("v");
    in.xattrs[0].len = 1;
    roundtrip(&in, &out, NULL);
    size_t n = out.nxattrs;
    int same = n == 1 && strcmp(out.xattrs[0].name, in.xattrs[0].name) == 0 && out.xattrs[0].len == 1 &&
               out.xattrs[0].value[0] == 'v';
    cf_entry_clear(&out);
    cf_entry_clear(&in);
    assert_int_equal(n, 1);
    assert_true(same);
}

static void from_fails(const char *json, const char *msg)
{
    json_error_t err;
    json_t *j = json_loads(json, 0, &err);
    if (!j)
        fail_msg("bad test JSON: %s", json);
    cf_entry e;
    int rc = cf_entry_from_json(j, &e);
    cf_entry_clear(&e); /* whatever was filled is freed (valgrind) */
    json_decref(j);
    if (rc != -1)
        fail_msg("accepted: %s", json);
    if (!strstr(cf_error(), msg))
        fail_msg("error \"%s\" does not contain \"%s\" for %s", cf_error(), msg, json);
}

static void test_from_json_rejects(void **state)
{
    (void)state;
    from_fails("{}", "without type");
    from_fails("{\"type\":5}", "without type");
    from_fails("{\"type\":\"file\",\"component\":\"c\"}", "manifest file entry of component 'c' without a name");
    from_fails("{\"type\":\"stream\",\"component\":\"db\",\"path\":\"x\"}", "without a name"); /* streams use name */
    from_fails("{\"type\":\"file\",\"component\":\"c\",\"path\":\"p\",\"chunks\":[\"zz\"]}",
               "manifest entry p: malformed chunk id #0");
    from_fails("{\"type\":\"file\",\"component\":\"c\",\"path\":\"p\",\"chunks\":[7]}", "malformed chunk id #0");
    from_fails("{\"type\":\"file\",\"component\":\"c\",\"path\":\"p\",\"chunks\":["
               "\"0000000000000000000000000000000000000000000000000000000000000000\","
               "\"000000000000000000000000000000000000000000000000000000000000000\"]}",
               "malformed chunk id #1");
    from_fails("{\"type\":\"file\",\"component\":\"c\",\"path\":\"p\",\"xattrs\":{\"user.a\":\"abc\"}}",
               "manifest entry p: malformed xattr user.a");
    from_fails("{\"type\":\"file\",\"component\":\"c\",\"path\":\"p\",\"xattrs\":{\"user.a\":\"00\",\"user.b\":\"xy\"}}",
               "malformed xattr user.b");
    from_fails("{\"type\":\"dir\",\"component\":\"c\",\"path\":\"p\",\"xattrs\":{\"user.a\":1}}", "malformed xattr");
    from_fails("{\"type\":\"meta\",\"component\":\"db\",\"meta\":[1]}",
               "manifest meta line of component 'db' without meta object");
    from_fails("{\"type\":\"meta\",\"component\":\"db\"}", "without meta object");
    /* hex names: embedded NUL, odd length, not hex */
    from_fails("{\"type\":\"file\",\"component\":\"c\",\"path_hex\":\"610062\"}",
               "member 'path_hex' is not the hex of a name without NUL");
    from_fails("{\"type\":\"file\",\"component\":\"c\",\"path_hex\":\"616\"}", "'path_hex'");
    from_fails("{\"type\":\"file\",\"component\":\"c\",\"path_hex\":\"zz\"}", "'path_hex'");
    /* Known members of the wrong type or out of range are refused, not read as 0. */
    from_fails("{\"type\":\"file\",\"path\":\"p\",\"size\":\"x\"}",
               "member 'size' is not an integer in [0, 9223372036854775807]");
    from_fails("{\"type\":\"file\",\"path\":\"p\",\"size\":-1}", "member 'size'");
    from_fails("{\"type\":\"dir\",\"path\":\"p\",\"mode\":-1}",
               "member 'mode' is not an integer in [0, 4095]");
    from_fails("{\"type\":\"dir\",\"path\":\"p\",\"mode\":16877}", "member 'mode'");
    from_fails("{\"type\":\"dir\",\"path\":\"p\",\"mode\":1.0}", "member 'mode'");
    from_fails("{\"type\":\"dir\",\"path\":\"p\",\"uid\":-1}", "member 'uid'");
    from_fails("{\"type\":\"dir\",\"path\":\"p\",\"mtime_ns\":1000000000}", "member 'mtime_ns'");
    from_fails("{\"type\":\"dir\",\"path\":\"p\",\"user\":0}", "member 'user' is not a string");
    from_fails("{\"type\":\"file\",\"path\":\"p\",\"size\":1,\"chunks\":{}}",
               "member 'chunks' is not an array");
    from_fails("{\"type\":\"file\",\"path\":\"p\",\"size\":0,\"chunks\":["
               "\"0000000000000000000000000000000000000000000000000000000000000000\"]}",
               "1 chunks for 0 bytes");
    from_fails("{\"type\":\"dir\",\"path\":\"p\",\"path_hex\":\"70\"}",
               "both 'path' and 'path_hex'");

    /* Unknown line types are kept as OTHER, not an error (format rule). */
    json_t *j = json_loads("{\"type\":\"acl\",\"component\":\"c\",\"x\":1}", 0, NULL);
    cf_entry e;
    assert_int_equal(cf_entry_from_json(j, &e), 0);
    assert_int_equal(e.kind, CF_ENT_OTHER);
    assert_string_equal(e.component, "c");
    cf_entry_clear(&e);
    json_decref(j);
    /* Unknown fields are ignored, whatever their type. */
    j = json_loads(
        "{\"type\":\"dir\",\"component\":\"c\",\"path\":\"d\",\"mode\":493,\"future\":[1,2]}", 0,
        NULL);
    assert_int_equal(cf_entry_from_json(j, &e), 0);
    assert_int_equal(e.mode, 0755);
    assert_null(e.user);
    cf_entry_clear(&e);
    json_decref(j);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One grammar, two readers: over every line of the committed corpus
 * (tests/fuzz/corpus/manifest, named ok-* or bad-* for the expected
 * answer) and the fuzzer's regression lines, both readers refuse, or both
 * accept with the same entry. */
static void diff_dir(const char *dir, size_t *nok, size_t *nbad, size_t *nplain)
{
    DIR *d = opendir(dir);
    if (!d)
        return; /* regressions/ may not exist */
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        names = cf_realloc(names, (n + 1) * sizeof *names);
        names[n++] = cf_strdup(de->d_name);
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len;
        char *line = et_read(path, &len);
        assert_non_null(line);
        cf_entry a, b;
        int ra = cf_entry_parse_fast(line, len, &a);
        char ea[512];
        snprintf(ea, sizeof ea, "%s", ra ? cf_error() : "");
        int rb = cf_entry_parse_tree(line, len, &b);
        if (ra != rb)
            fail_msg("%s: fast %d (%s), tree %d (%s)", names[i], ra, ea, rb, rb ? cf_error() : "");
        cf_entry p;
        int rp = cf_entry_parse_plain(line, len, &p);
        if (rp != 1) {
            (*nplain)++;
            if (rp != rb)
                fail_msg("%s: plain %d, tree %d", names[i], rp, rb);
            const char *diff = rp == 0 ? cf_entry_diff(&p, &b) : NULL;
            if (diff)
                fail_msg("%s: plain and tree readers differ in %s", names[i], diff);
        } else if (p.component || p.path) {
            fail_msg("%s: a line left to the general reader came back filled", names[i]);
        }
        cf_entry_clear(&p);
        if (ra == 0) {
            const char *diff = cf_entry_diff(&a, &b);
            if (diff)
                fail_msg("%s: readers differ in %s", names[i], diff);
        }
        if (strncmp(names[i], "ok-", 3) == 0 && ra != 0)
            fail_msg("%s: refused: %s", names[i], ea);
        if (strncmp(names[i], "bad-", 4) == 0 && ra == 0)
            fail_msg("%s: accepted", names[i]);
        if (ra == 0)
            (*nok)++;
        else
            (*nbad)++;
        cf_entry_clear(&a);
        cf_entry_clear(&b);
        free(line);
        free(names[i]);
    }
    free(names);
}

/* Which lines the plain reader takes (0 or -1) and which it leaves to
 * the general reader (1), and that it answers as the tree reader does. */
static void test_plain_lines(void **state)
{
    (void)state;
#define FILE_LINE(path, mode, mns, tail)                                                        \
    "{\"type\":\"file\",\"component\":\"files\",\"path\":\"" path "\",\"mode\":" mode            \
    ",\"uid\":0,\"gid\":0,\"user\":\"root\",\"group\":\"root\",\"mtime\":1796543639,"          \
    "\"mtime_ns\":" mns ",\"size\":591,\"chunks\":[\"c7e8c51c21aa5bbbd7e8aeaba02233267669aaff" \
    "29c37925059dc66a757a71fb\"],\"dev\":65024,\"ino\":1124381,\"nlink\":1,\"ctime\":1,"        \
    "\"ctime_ns\":0" tail "}"
    static const struct {
        const char *line;
        int plain; /* cf_entry_parse_plain's answer */
        int ok;    /* the readers' answer: 0 accepted, -1 refused */
    } cases[] = {
        {FILE_LINE("d/f.bin", "420", "633068551", ""), 0, 0},
        {"{\"type\":\"dir\",\"component\":\"files\",\"path\":\"d\",\"mode\":493,\"uid\":0,"
         "\"gid\":0,\"mtime\":1,\"mtime_ns\":2}",
         0, 0},
        {"{\"type\":\"symlink\",\"component\":\"files\",\"path\":\"l\",\"mode\":511,\"uid\":0,"
         "\"gid\":0,\"mtime\":1,\"mtime_ns\":2,\"target\":\"../x y\"}",
         0, 0},
        {"{\"type\":\"file\",\"component\":\"files\",\"path\":\"e\",\"size\":0,\"chunks\":[]}", 0,
         0},
        /* refused by the checks both readers share */
        {FILE_LINE("d/f.bin", "99999", "633068551", ""), -1, -1},
        {FILE_LINE("d/f.bin", "420", "1000000000", ""), -1, -1},
        {"{\"type\":\"file\",\"component\":\"files\",\"path\":\"s\",\"size\":9,\"chunks\":"
         "[\"c7e8\"]}",
         -1, -1},
        /* left to the general reader */
        {FILE_LINE("d/f\\u0041.bin", "420", "1", ""), 1, 0},
        {FILE_LINE("d/\xc3\xa9.bin", "420", "1", ""), 1, 0},
        {FILE_LINE("d/f.bin", "420", "-0", ""), 1, 0},
        {FILE_LINE("d/f.bin", "0420", "1", ""), 1, -1},
        {FILE_LINE("d/f.bin", "420", "1", ",\"mode\":420"), 1, -1},
        {FILE_LINE("d/f.bin", "420", "1", ",\"future\":true"), 1, 0},
        {FILE_LINE("d/f.bin", "420", "1", ",\"xattrs\":{\"user.a\":\"00\"}"), 1, 0},
        {FILE_LINE("d/f.bin", "420", "1.5", ""), 1, -1},
        {FILE_LINE("d/f.bin", "420", "1e3", ""), 1, -1},
        {FILE_LINE("d/f.bin", "1234567890123456789", "1", ""), 1, -1},
        {FILE_LINE("d/f.bin", "420", "123456789012345678", ""), -1, -1},
        {FILE_LINE("d/f.bin", "\"420\"", "1", ""), -1, -1},
        {"{\"type\": \"file\",\"component\":\"files\",\"path\":\"e\",\"size\":0,\"chunks\":[]}",
         1, 0},
        {FILE_LINE("d/f.bin", "420", "1", "") " ", 1, 0},
        {FILE_LINE("d/f.bin", "420", "1", "") "x", 1, -1},
        {"{\"type\":\"file\",\"component\":\"files\",\"path\":\"e\",\"size\":1,\"chunks\":[1]}", 1,
         -1},
        {"{\"type\":\"file\"", 1, -1},
        {"{}", 1, -1},
        {"", 1, -1},
    };
#undef FILE_LINE
    for (size_t i = 0; i < CF_ARRAY_LEN(cases); i++) {
        const char *l = cases[i].line;
        cf_entry p, t, f;
        int rp = cf_entry_parse_plain(l, strlen(l), &p);
        if (rp != cases[i].plain)
            fail_msg("case %zu: plain %d, expected %d (%s): %s", i, rp, cases[i].plain,
                     rp < 0 ? cf_error() : "", l);
        if (rp == 1)
            assert_null(p.path);
        int rt = cf_entry_parse_tree(l, strlen(l), &t);
        int rf = cf_entry_parse_fast(l, strlen(l), &f);
        if (rt != cases[i].ok || rf != cases[i].ok)
            fail_msg("case %zu: tree %d, fast %d, expected %d: %s", i, rt, rf, cases[i].ok, l);
        if (rp == 0) {
            const char *d = cf_entry_diff(&p, &t);
            if (d)
                fail_msg("case %zu: plain and tree differ in %s", i, d);
        }
        cf_entry_clear(&p);
        cf_entry_clear(&t);
        cf_entry_clear(&f);
    }
    /* a refusal names the member at fault, as the general reader's does */
    cf_entry e;
    const char *bad = cases[4].line;
    assert_int_equal(cf_entry_parse_plain(bad, strlen(bad), &e), -1);
    assert_non_null(strstr(cf_error(), "'mode'"));
}

static void test_readers_agree_on_corpus(void **state)
{
    (void)state;
    const char *src = getenv("COFFER_TEST_SRC");
    assert_non_null(src);
    char dir[1024];
    size_t nok = 0, nbad = 0, nplain = 0;
    snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/manifest", src);
    diff_dir(dir, &nok, &nbad, &nplain);
    /* the corpus is there and holds both answers, some lines plain */
    assert_true(nok >= 15);
    assert_true(nbad >= 60);
    assert_true(nplain >= 10);
    snprintf(dir, sizeof dir, "%s/tests/fuzz/regressions/manifest", src);
    diff_dir(dir, &nok, &nbad, &nplain);
}

static void test_json_name_helpers(void **state)
{
    (void)state;
    json_t *o = json_object();
    cf_json_set_name(o, "path", "ok/name");
    cf_json_set_name(o, "target", "\xfe");
    char *s = cf_json_get_name(o, "path");
    assert_string_equal(s, "ok/name");
    free(s);
    assert_null(json_object_get(o, "target"));
    assert_string_equal(json_string_value(json_object_get(o, "target_hex")), "fe");
    s = cf_json_get_name(o, "target");
    assert_string_equal(s, "\xfe");
    free(s);
    assert_null(cf_json_get_name(o, "missing"));
    json_decref(o);
}

/* ---- writer -> repository -> reader ------------------------------------- */

/* The entries of a manifest used by several tests: every kind, one file
 * with a line far longer than the reader's buffer, and many small ones. */
static size_t build_entries(cf_entry **out, size_t nsmall)
{
    size_t n = 6 + nsmall, k = 0;
    cf_entry *v = cf_calloc(n, sizeof *v);
    memset(&v[k], 0, sizeof v[k]);
    v[k].kind = CF_ENT_STREAM;
    v[k].component = cf_strdup("database");
    v[k].path = cf_strdup("main");
    v[k].size = 99;
    v[k].nchunks = 1;
    v[k].chunks = cf_malloc(sizeof(cf_id));
    fake_id(v[k].chunks, 5);
    k++;
    v[k].kind = CF_ENT_META;
    v[k].component = cf_strdup("database");
    v[k].meta = json_pack("{s:s}", "rows.t", "3");
    k++;
    base(&v[k++], CF_ENT_DIR, "data", "data", 1);
    make_file(&v[k], "data/big", 6000, 2); /* ~400 KB line */
    set_xattrs(&v[k]);
    k++;
    base(&v[k], CF_ENT_SYMLINK, "data", "data/l\xff", 3);
    v[k++].target = cf_strdup("big");
    base(&v[k], CF_ENT_HARDLINK, "data", "data/big2", 4);
    v[k++].target = cf_strdup("data/big");
    for (size_t i = 0; i < nsmall; i++) {
        char p[64];
        snprintf(p, sizeof p, "data/f%06zu", i);
        make_file(&v[k++], p, i % 4, 10 + i);
    }
    *out = v;
    return n;
}

static void free_entries(cf_entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cf_entry_clear(&v[i]);
    free(v);
}

static void commit_set(fx *f, const char *id, cf_entry *v, size_t n)
{
    cf_mwriter *w;
    assert_int_equal(cf_manifest_begin(&w), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(cf_manifest_add(w, &v[i]), 0);
    assert_int_equal(cf_manifest_count(w), n);
    json_t *h = json_pack("{s:s,s:s,s:i}", "id", id, "policy", "p", "custom", 5);
    if (cf_manifest_commit(w, f->repo, id, h) != 0)
        fail_msg("commit: %s", cf_error());
    json_decref(h);
    cf_manifest_free(w);
}

static int dir_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            strcmp(e->d_name, ".coffer-alive")) /* the directory's own liveness lock */
            n++;
    closedir(d);
    return n;
}

static void test_write_commit_read(void **state)
{
    fx *f = *state;
    cf_entry *v;
    size_t n = build_entries(&v, 3000);
    const char *id = "20261127T033000Z-1a2b3c4d";

    cf_mwriter *w;
    assert_int_equal(cf_manifest_begin(&w), 0);
    /* The spool file is private: unlinked at once. */
    assert_int_equal(dir_entries(cf_tmpdir()), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(cf_manifest_add(w, &v[i]), 0);
    /* Not visible before commit. */
    assert_false(mem_storage_exists(f->ms, "sets/20261127T033000Z-1a2b3c4d"));
    json_t *h = json_pack("{s:s,s:s,s:s}", "id", id, "policy", "asterdrive", "mode", "online");
    assert_int_equal(cf_manifest_commit(w, f->repo, id, h), 0);
    json_decref(h);
    cf_manifest_free(w);
    assert_true(mem_storage_exists(f->ms, "sets/20261127T033000Z-1a2b3c4d"));

    cf_mreader *m;
    json_t *hdr;
    assert_int_equal(cf_manifest_open(f->repo, id, &m, &hdr), 0);
    assert_string_equal(json_string_value(json_object_get(hdr, "type")), "set");
    assert_int_equal(json_integer_value(json_object_get(hdr, "format")), CF_MANIFEST_FORMAT);
    assert_int_equal(json_integer_value(json_object_get(hdr, "entries")), n);
    assert_string_equal(json_string_value(json_object_get(hdr, "id")), id);
    assert_string_equal(json_string_value(json_object_get(hdr, "policy")), "asterdrive");
    assert_string_equal(json_string_value(json_object_get(hdr, "mode")), "online");
    cf_entry e;
    size_t i = 0;
    int rc;
    while ((rc = cf_manifest_next(m, &e)) == 1) {
        assert_true(i < n);
        assert_same_entry(&v[i], &e);
        cf_entry_clear(&e);
        i++;
    }
    if (rc != 0)
        fail_msg("next: %s", cf_error());
    assert_int_equal(i, n);
    assert_int_equal(cf_manifest_next(m, &e), 0); /* stays at the end */
    cf_manifest_close(m);

    json_t *h2;
    assert_int_equal(cf_manifest_header(f->repo, id, &h2), 0);
    assert_true(json_equal(hdr, h2));
    json_decref(h2);
    json_decref(hdr);

    /* A set with no entries. */
    commit_set(f, "20261127T040000Z-00000000", NULL, 0);
    assert_int_equal(cf_manifest_open(f->repo, "20261127T040000Z-00000000", &m, &hdr), 0);
    assert_int_equal(json_integer_value(json_object_get(hdr, "entries")), 0);
    assert_int_equal(cf_manifest_next(m, &e), 0);
    cf_manifest_close(m);
    json_decref(hdr);

    /* A missing set names its key. */
    assert_int_equal(cf_manifest_open(f->repo, "nope", &m, &hdr), -1);
    assert_error_has("sets/nope");
    free_entries(v, n);
}

/* Read a whole set; returns the count, or -1 (error in cf_error). Never
 * reports success short of the recorded entries. */
static long read_all(fx *f, const char *id)
{
    cf_mreader *m;
    json_t *h;
    if (cf_manifest_open(f->repo, id, &m, &h) != 0)
        return -1;
    json_decref(h);
    cf_entry e;
    long n = 0;
    int rc;
    while ((rc = cf_manifest_next(m, &e)) == 1) {
        cf_entry_clear(&e);
        n++;
    }
    cf_manifest_close(m);
    return rc < 0 ? -1 : n;
}

/* Commit n entries under id with a header padded by pad bytes; check
 * that the set reads back whole and that its body is one zstd frame
 * (repository-format.md: the body is exactly one frame, whatever the
 * level and however many threads compressed it). */
static void frame_roundtrip(cf_repo *repo, mem_storage *ms, const char *id, cf_entry *v, size_t n,
                              size_t pad)
{
    cf_mwriter *w;
    assert_int_equal(cf_manifest_begin(&w), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(cf_manifest_add(w, &v[i]), 0);
    char *padding = cf_malloc(pad + 1);
    memset(padding, 'p', pad);
    padding[pad] = 0;
    json_t *h = json_pack("{s:s,s:s,s:s}", "id", id, "policy", "p", "pad", padding);
    if (cf_manifest_commit(w, repo, id, h) != 0)
        fail_msg("commit: %s", cf_error());
    json_decref(h);
    cf_manifest_free(w);

    cf_mreader *m;
    assert_int_equal(cf_manifest_open(repo, id, &m, &h), 0);
    assert_string_equal(json_string_value(json_object_get(h, "pad")), padding);
    json_decref(h);
    free(padding);
    cf_entry e;
    size_t k = 0;
    int rc;
    while ((rc = cf_manifest_next(m, &e)) == 1) {
        assert_true(k < n);
        size_t la, lb;
        char *a = cf_entry_line(&e, &la), *b = cf_entry_line(&v[k], &lb);
        assert_string_equal(a, b);
        free(a);
        free(b);
        cf_entry_clear(&e);
        k++;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(k, n);
    cf_manifest_close(m);

    char key[64];
    snprintf(key, sizeof key, "sets/%s", id);
    size_t len;
    uint8_t *obj = mem_storage_get(ms, key, &len);
    assert_non_null(obj);
    assert_true(len > 8 + 32);
    assert_int_equal(obj[6] & 1, 1); /* a zstd body */
    size_t body = len - 8 - 32;
    assert_int_equal(ZSTD_findFrameCompressedSize(obj + 8, body), body);
    free(obj);
}

static void test_commit_one_frame(void **state)
{
    fx *f = *state;
    cf_entry *v;
    size_t n = build_entries(&v, 40000);
    /* a header over several blocks, lines over many (8 MiB and more of
     * lines: compressed on every core) */
    frame_roundtrip(f->repo, f->ms, "20261206T090000Z-00000001", v, n, 300000);
    /* nothing but the header and the end line */
    frame_roundtrip(f->repo, f->ms, "20261206T090000Z-00000002", v, 0, 10);
    /* a repository above the default level keeps its level */
    mem_storage *ms;
    cf_store *st = mem_store_new("target 'mem19'", &ms);
    cf_repo_params p = {.cdc = {.min_size = 2048, .avg_size = 8192, .max_size = 65536, .seed = 7},
                        .zstd_level = 19};
    assert_int_equal(cf_repo_init(st, &p), 0);
    cf_repo *r;
    assert_int_equal(cf_repo_open(st, &r), 0);
    frame_roundtrip(r, ms, "20261206T090000Z-00000003", v, 2006, 200000);
    cf_repo_close(r);
    cf_store_free(st);
    free_entries(v, n);
}

static void test_damaged_object_is_an_error(void **state)
{
    fx *f = *state;
    cf_entry *v;
    size_t n = build_entries(&v, 2000);
    const char *id = "20261127T050000Z-deadbeef", *key = "sets/20261127T050000Z-deadbeef";
    commit_set(f, id, v, n);
    free_entries(v, n);
    assert_int_equal(read_all(f, id), (long)n);

    size_t len;
    uint8_t *orig = mem_storage_get(f->ms, key, &len);
    assert_non_null(orig);
    assert_true(len > 1000);
    /* Truncations at many places: the trailer, the middle, the header. */
    size_t cuts[] = {len - 1, len - 31, len - 32, len - 33, len - 100, len / 2, 100, 41, 40, 39, 8, 0};
    for (size_t c = 0; c < CF_ARRAY_LEN(cuts); c++) {
        assert_int_equal(cf_store_put(f->st, key, orig, len, 0), 0);
        assert_int_equal(mem_storage_truncate(f->ms, key, cuts[c]), 0);
        cf_error_clear();
        long got = read_all(f, id);
        if (got != -1)
            fail_msg("truncated to %zu of %zu bytes: read %ld entries without an error", cuts[c], len, got);
        assert_error_has(key);
    }
    /* Bit flips anywhere. */
    size_t flips[] = {0, 5, 9, len / 3, len / 2, len - 40, len - 1};
    for (size_t c = 0; c < CF_ARRAY_LEN(flips); c++) {
        assert_int_equal(cf_store_put(f->st, key, orig, len, 0), 0);
        assert_int_equal(mem_storage_flip(f->ms, key, flips[c]), 0);
        cf_error_clear();
        long got = read_all(f, id);
        if (got != -1)
            fail_msg("byte %zu flipped: read %ld entries without an error", flips[c], got);
        assert_error_has(key);
    }
    free(orig);
}

/* A manifest object with a valid envelope but the given content. */
static void put_raw(fx *f, const char *id, const char *content)
{
    char key[128];
    snprintf(key, sizeof key, "sets/%s", id);
    assert_int_equal(cf_repo_put_object(f->repo, CF_OBJ_MANIFEST, key, content, strlen(content)), 0);
}

#define HDR(n) "{\"type\":\"set\",\"format\":1,\"policy\":\"p\",\"entries\":" #n "}\n"
#define ENT(p) "{\"type\":\"dir\",\"component\":\"c\",\"path\":\"" p "\",\"mode\":493}\n"
#define END(n) "{\"type\":\"end\",\"entries\":" #n "}\n"

static void raw_fails(fx *f, const char *id, const char *content, const char *msg)
{
    put_raw(f, id, content);
    cf_error_clear();
    long got = read_all(f, id);
    if (got != -1)
        fail_msg("set %s read %ld entries without an error", id, got);
    char key[128];
    snprintf(key, sizeof key, "sets/%s", id);
    assert_error_has(key);
    assert_error_has(msg);
}

static void test_logical_damage(void **state)
{
    fx *f = *state;
    put_raw(f, "ok", HDR(2) ENT("a") ENT("a/b") END(2));
    assert_int_equal(read_all(f, "ok"), 2);

    raw_fails(f, "fewer", HDR(3) ENT("a") ENT("b") END(2), "has 2 entries, header says 3");
    raw_fails(f, "more", HDR(1) ENT("a") ENT("b") END(2), "has 2 entries, header says 1");
    raw_fails(f, "noend", HDR(2) ENT("a") ENT("b"), "truncated: no end line after 2 entries");
    raw_fails(f, "cutline", HDR(2) ENT("a") "{\"type\":\"dir\",\"comp", "truncated (last line has no end)");
    raw_fails(f, "badjson", HDR(2) ENT("a") "{not json}\n" END(2), "line 3: not valid JSON");
    raw_fails(f, "array", HDR(1) "[1,2]\n" END(1), "not valid JSON");
    raw_fails(f, "nohdr", ENT("a") END(1), "first line is not a set header");
    raw_fails(f, "format2", "{\"type\":\"set\",\"format\":2,\"entries\":0}\n" END(0),
              "manifest format 2 is not supported");
    raw_fails(f, "empty", "", "empty manifest");
    raw_fails(f, "badentry",
              HDR(1) "{\"type\":\"file\",\"component\":\"c\",\"path\":\"p\",\"chunks\":[\"x\"]}\n" END(1),
              "malformed chunk id");
    /* Unknown line types count as entries and are skipped by readers. */
    put_raw(f, "future", HDR(2) ENT("a") "{\"type\":\"acl\",\"component\":\"c\"}\n" END(2));
    assert_int_equal(read_all(f, "future"), 2);
}

/* The format: "A reader that reaches the end of the object without it [the
 * end line], or finds a different count, must treat the manifest as
 * truncated." (Regression: the end line's own count was not compared.) */
static void test_end_line_count_checked(void **state)
{
    fx *f = *state;
    raw_fails(f, "endcount", HDR(1) ENT("a") END(5), "entries");
}

/* Whatever the grammar refuses is damage, reported with the set and the
 * line (the header is line 1), by every command (they all read through
 * cf_manifest_next). */
static void put_rawn(fx *f, const char *id, const char *content, size_t len)
{
    char key[128];
    snprintf(key, sizeof key, "sets/%s", id);
    assert_int_equal(cf_repo_put_object(f->repo, CF_OBJ_MANIFEST, key, content, len), 0);
}

static void test_damaged_line_names_set_and_line(void **state)
{
    fx *f = *state;
    raw_fails(f, "size",
              HDR(2) ENT("a") "{\"type\":\"file\",\"path\":\"f\",\"size\":\"x\"}\n" END(2),
              "sets/size: line 3: member 'size' is not an integer");
    raw_fails(f, "garbage", HDR(1) "{\"type\":\"dir\",\"path\":\"d\"} \"garbage\n" END(1),
              "sets/garbage: line 2: bytes after the JSON object");
    raw_fails(f, "vtab", HDR(1) "{\"type\":\"dir\",\v\"path\":\"d\"}\n" END(1),
              "sets/vtab: line 2: control character 0x0b");
    raw_fails(f, "dup", HDR(1) "{\"type\":\"dir\",\"path\":\"d\",\"path\":\"e\"}\n" END(1),
              "sets/dup: line 2: not valid JSON: duplicate member name");
    raw_fails(f, "mode", HDR(1) "{\"type\":\"dir\",\"path\":\"d\",\"mode\":16877}\n" END(1),
              "sets/mode: line 2: member 'mode'");
    raw_fails(f, "endcnt", HDR(0) "{\"type\":\"end\",\"entries\":\"0\"}\n",
              "sets/endcnt: line 2: end line without a count");
    /* A NUL byte ends a C string, not the line: what follows is not lost. */
    static const char nul[] = "{\"type\":\"set\",\"format\":1,\"policy\":\"p\",\"entries\":1}\n"
                              "{\"type\":\"dir\",\"path\":\"d\"}\0garbage\n"
                              "{\"type\":\"end\",\"entries\":1}\n";
    put_rawn(f, "nul", nul, sizeof nul - 1);
    cf_error_clear();
    assert_int_equal(read_all(f, "nul"), -1);
    assert_error_has("sets/nul: line 2: control character 0x00");
}

static void test_sets_list_sorted(void **state)
{
    fx *f = *state;
    char **ids;
    size_t n;
    assert_int_equal(cf_sets_list(f->repo, &ids, &n), 0);
    assert_int_equal(n, 0);
    cf_strv_free(ids, n);

    const char *order[] = {"20261127T033000Z-bbbbbbbb", "20250101T000000Z-ffffffff",
                           "20261127T033000Z-aaaaaaaa", "20261231T235959Z-00000000",
                           "20261127T033001Z-00000000"};
    for (size_t i = 0; i < CF_ARRAY_LEN(order); i++)
        commit_set(f, order[i], NULL, 0);
    /* Keys that are not sets are ignored. */
    assert_int_equal(cf_store_put(f->st, "sets/sub/x", "x", 1, 0), 0);
    assert_int_equal(cf_store_put(f->st, "setsx", "x", 1, 0), 0);
    assert_int_equal(cf_sets_list(f->repo, &ids, &n), 0);
    assert_int_equal(n, 5);
    assert_string_equal(ids[0], "20250101T000000Z-ffffffff");
    assert_string_equal(ids[1], "20261127T033000Z-aaaaaaaa");
    assert_string_equal(ids[2], "20261127T033000Z-bbbbbbbb");
    assert_string_equal(ids[3], "20261127T033001Z-00000000");
    assert_string_equal(ids[4], "20261231T235959Z-00000000");
    cf_strv_free(ids, n);
}

/* Integers are written by the manifest's own formatter: negative,
 * zero and the largest values come back as they went in. */
static void test_integers_roundtrip(void **state)
{
    (void)state;
    int64_t mtimes[] = {-86400, -1, 0, 9, 1764213001, INT64_MAX};
    for (size_t i = 0; i < sizeof mtimes / sizeof *mtimes; i++) {
        cf_entry fe, back;
        make_file(&fe, "data/t", 1, 3 + i);
        fe.mtime = mtimes[i];
        fe.ctime = -mtimes[i] / 2;
        fe.uid = 0;
        fe.ino = (uint64_t)INT64_MAX;
        size_t len;
        char *line = cf_entry_line(&fe, &len);
        assert_non_null(line);
        if (cf_entry_parse_fast(line, len, &back) != 0)
            fail_msg("%s: %s", line, cf_error());
        assert_int_equal(back.mtime, fe.mtime);
        assert_int_equal(back.ctime, fe.ctime);
        assert_int_equal(back.uid, 0);
        assert_int_equal(back.ino, fe.ino);
        cf_entry_clear(&back);
        cf_entry_clear(&fe);
        free(line);
    }
}

/* The head of a file line: component and path when they come before the
 * chunks, else 0 (the line is then parsed whole). */
static void test_parse_head(void **state)
{
    (void)state;
    cf_entry fe, h;
    make_file(&fe, "data/some file", 300, 7);
    size_t len;
    char *line = cf_entry_line(&fe, &len);
    assert_non_null(line);
    assert_int_equal(cf_entry_parse_head(line, len, &h), 1);
    assert_int_equal(h.kind, CF_ENT_FILE);
    assert_string_equal(h.component, "data");
    assert_string_equal(h.path, "data/some file");
    assert_int_equal(h.nchunks, 0);
    cf_entry_clear(&h);
    free(line);

    /* A path that is not UTF-8 is written as path_hex: parse whole. */
    cf_entry_clear(&fe);
    make_file(&fe, "data/n\xff", 300, 8);
    line = cf_entry_line(&fe, &len);
    assert_int_equal(cf_entry_parse_head(line, len, &h), 0);
    assert_null(h.path);
    free(line);
    cf_entry_clear(&fe);

    const char *whole[] = {
        /* another order: the chunks first */
        "{\"type\":\"file\",\"chunks\":[],\"component\":\"data\",\"path\":\"x\"}",
        /* not a file */
        "{\"type\":\"dir\",\"component\":\"data\",\"path\":\"x\",\"chunks\":[]}",
        /* no path before the chunks */
        "{\"type\":\"file\",\"component\":\"data\",\"chunks\":[],\"path\":\"x\"}",
        /* a duplicate member before the chunks */
        "{\"type\":\"file\",\"component\":\"data\",\"path\":\"x\",\"path\":\"y\",\"chunks\":[]}",
        /* not JSON */
        "{\"type\":\"file\",\"component\":\"data\",\"path\":\"x\"",
        "[\"type\",\"file\"]",
        "",
    };
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++) {
        assert_int_equal(cf_entry_parse_head(whole[i], strlen(whole[i]), &h), 0);
        assert_null(h.component);
        assert_null(h.path);
    }
}

static int pass_odd(void *ud, const cf_entry *head)
{
    size_t *calls = ud;
    (*calls)++;
    size_t k = strlen(head->path);
    return k && (head->path[k - 1] - '0') % 2 == 1;
}

/* Reading a set while passing over long file lines: the lines passed
 * over count (the end line's count holds), the others are read exactly,
 * and the trailer is still checked. */
static void test_skim_passes_long_lines(void **state)
{
    fx *f = *state;
    size_t n = 40;
    cf_entry *v = cf_calloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++) {
        char p[64];
        snprintf(p, sizeof p, "data/f%03zu", i);
        /* every third file short (one chunk), the others over 4 KiB */
        make_file(&v[i], p, i % 3 == 0 ? 1 : 200, 100 + i);
    }
    const char *id = "20261206T050000Z-5e1f0a11";
    commit_set(f, id, v, n);

    cf_mreader *m;
    json_t *h;
    assert_int_equal(cf_manifest_open(f->repo, id, &m, &h), 0);
    json_decref(h);
    size_t calls = 0, got = 0, passed = 0, i = 0;
    cf_entry e;
    int rc;
    while ((rc = cf_manifest_next_skim(m, &e, pass_odd, &calls)) > 0) {
        size_t k = strlen(v[i].path);
        int odd_long = i % 3 != 0 && (v[i].path[k - 1] - '0') % 2 == 1;
        if (rc == 2) {
            assert_true(odd_long);
            assert_null(e.path);
            passed++;
        } else {
            assert_false(odd_long);
            assert_same_entry(&v[i], &e);
            cf_entry_clear(&e);
            got++;
        }
        i++;
    }
    if (rc != 0)
        fail_msg("next_skim: %s", cf_error());
    cf_manifest_close(m);
    assert_int_equal(i, n);
    assert_int_equal(got + passed, n);
    assert_true(passed > 10);
    /* short lines are never offered: parsing their head costs as much */
    size_t longs = 0;
    for (size_t j = 0; j < n; j++)
        longs += j % 3 != 0;
    assert_int_equal(calls, longs);

    /* A wrong trailer is still an error, however much was passed over:
     * only the last byte (of the trailer hash) is changed. */
    char key[80];
    snprintf(key, sizeof key, "sets/%s", id);
    int64_t olen = mem_storage_size(f->ms, key);
    assert_true(olen > 100);
    assert_int_equal(mem_storage_flip(f->ms, key, (uint64_t)olen - 1), 0);
    assert_int_equal(cf_manifest_open(f->repo, id, &m, &h), 0);
    json_decref(h);
    while ((rc = cf_manifest_next_skim(m, &e, pass_odd, &calls)) > 0)
        if (rc == 1)
            cf_entry_clear(&e);
    cf_manifest_close(m);
    assert_int_equal(rc, -1);
    free_entries(v, n);
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_roundtrip_every_kind),       T(test_roundtrip_objects),
        T(test_stream_keeps_capture_time),  T(test_non_utf8_names),
        T(test_xattr_name_not_utf8),        T(test_from_json_rejects),
        T(test_plain_lines), T(test_readers_agree_on_corpus),    T(test_damaged_line_names_set_and_line),
        T(test_json_name_helpers),          T(test_write_commit_read),
        T(test_damaged_object_is_an_error), T(test_logical_damage),
        T(test_end_line_count_checked),     T(test_sets_list_sorted),
        T(test_parse_head),                 T(test_skim_passes_long_lines),
        T(test_integers_roundtrip),
        T(test_commit_one_frame),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
