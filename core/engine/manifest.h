/*
 * Set manifests: the record of one backup run, written last. The object
 * sets/<setid> holds JSON Lines: a header line, one line per entry, and an
 * end line (see docs/repository-format.md, "Set manifests"). Entries are
 * spooled to a private temporary file while the backup runs, so the header
 * can carry totals and memory stays bounded.
 */
#ifndef CF_MANIFEST_H
#define CF_MANIFEST_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#include "repo/repo.h"

#define CF_MANIFEST_FORMAT 1

typedef enum {
    CF_ENT_FILE = 0,
    CF_ENT_DIR,
    CF_ENT_SYMLINK,
    CF_ENT_HARDLINK,
    CF_ENT_STREAM, /* a database dump stream */
    CF_ENT_META,   /* driver metadata of a component */
    CF_ENT_OBJECT, /* an object of an object_store component */
    CF_ENT_OTHER,  /* a line this reader does not know (kept, ignored) */
} cf_ent_kind;

typedef struct cf_xattr {
    char *name;
    uint8_t *value;
    size_t len;
} cf_xattr;

typedef struct cf_entry {
    cf_ent_kind kind;
    char *component;
    char *path;     /* relative path (files) or stream name */
    uint32_t mode;  /* permission bits (07777) */
    int64_t uid, gid;
    char *user, *group;
    int64_t mtime, ctime;        /* seconds */
    long mtime_ns, ctime_ns;     /* nanoseconds part */
    uint64_t dev, ino, nlink;
    uint64_t size;
    char *target;   /* symlink target, or hard link's first path */
    cf_id *chunks;
    size_t nchunks;
    cf_xattr *xattrs;
    size_t nxattrs;
    json_t *meta;   /* CF_ENT_META: object of string values (owned) */
    char *version_id; /* CF_ENT_OBJECT: version recorded (versioning protection) */
    char *etag;       /* CF_ENT_OBJECT */
} cf_entry;

void cf_entry_clear(cf_entry *e);
json_t *cf_entry_to_json(const cf_entry *e);
/* The entry's manifest line without its newline (malloc'd, *len bytes;
 * NULL with cf_error on failure): the bytes cf_manifest_add writes. */
char *cf_entry_line(const cf_entry *e, size_t *len);
/* Entry lines (docs/repository-format.md, section 9, "Entry line grammar").
 * Two readers of one grammar: both return 0 with e filled (kind
 * CF_ENT_OTHER for a line type this reader does not know), or -1 with
 * cf_error naming the member at fault; e is then empty. */
int cf_entry_from_json(json_t *j, cf_entry *e); /* tree: an object already parsed */
int cf_entry_parse_tree(const char *line, size_t len, cf_entry *e); /* jansson */
int cf_entry_parse_fast(const char *line, size_t len, cf_entry *e); /* yajl callbacks */
/* The first step of cf_entry_parse_fast: a plain line (one flat object,
 * no whitespace, strings of printable ASCII without escapes, as coffer
 * writes nearly every line) read without a JSON library. 0 or -1 as
 * above; 1: not plain (e empty), for the general reader. */
int cf_entry_parse_plain(const char *line, size_t len, cf_entry *e);
/* Only kind, component and path of a file line whose path comes before
 * its chunks, unchecked: 1, else 0 (parse the line whole). */
int cf_entry_parse_head(const char *line, size_t len, cf_entry *e);
const char *cf_ent_kind_name(cf_ent_kind k);

/* ---- shared by the two readers (manifest.c, manifest_fast.c) ---------- */

/* Nesting limit of a line: the line's object is level 1. */
#define CF_MLINE_MAX_DEPTH 32

/* Lexical rules both parsers are held to: strict UTF-8, no control bytes
 * but tab and CR (outside strings), no \u0000, paired surrogate escapes. */
int cf_mline_lex_check(const char *line, size_t len);

/* Members with a meaning (their value is checked); others are ignored. */
enum cf_mfield {
    CF_MF_TYPE,
    CF_MF_COMPONENT,
    CF_MF_PATH,
    CF_MF_PATH_HEX,
    CF_MF_NAME,
    CF_MF_NAME_HEX,
    CF_MF_KEY,
    CF_MF_KEY_HEX,
    CF_MF_TARGET,
    CF_MF_TARGET_HEX,
    CF_MF_USER,
    CF_MF_GROUP,
    CF_MF_VERSION_ID,
    CF_MF_ETAG,
    CF_MF_MODE,
    CF_MF_UID,
    CF_MF_GID,
    CF_MF_MTIME,
    CF_MF_MTIME_NS,
    CF_MF_CTIME,
    CF_MF_CTIME_NS,
    CF_MF_DEV,
    CF_MF_INO,
    CF_MF_NLINK,
    CF_MF_SIZE,
    CF_MF_SCALARS, /* the members above hold a string or an integer */
    CF_MF_CHUNKS = CF_MF_SCALARS,
    CF_MF_XATTRS,
    CF_MF_META,
    CF_MF_COUNT,
};
extern const char *const cf_mfield_names[CF_MF_COUNT];
int cf_mfield_lookup(const char *name, size_t len); /* enum cf_mfield or -1 */

/* What a member held, before any check. */
enum cf_mval { CF_MV_ABSENT, CF_MV_STRING, CF_MV_INTEGER, CF_MV_OBJECT, CF_MV_ARRAY, CF_MV_OTHER };

typedef struct cf_mraw {
    enum cf_mval t[CF_MF_COUNT];
    char *str[CF_MF_SCALARS];   /* CF_MV_STRING (owned) */
    int64_t num[CF_MF_SCALARS]; /* CF_MV_INTEGER */
    cf_id *chunks;              /* chunks array: parsed ids */
    size_t nchunks, chunks_cap;
    size_t chunk_bad;         /* 1 + index of the first element that is not an id; 0 none */
    char **xnames, **xvalues; /* xattrs object: names, values (NULL: not a string) */
    size_t nx, xcap;
    json_t *meta; /* meta object rebuilt of its string values */
    int meta_bad; /* a meta value that is not a string */
} cf_mraw;

void cf_mraw_add_chunk(cf_mraw *r, const char *s, size_t len); /* s NULL: not a string */
void cf_mraw_add_xattr(cf_mraw *r, const char *name, const char *value, size_t vlen);
void cf_mraw_free(cf_mraw *r);
/* Check r against the grammar and move it into e (r is freed either way). */
int cf_mraw_finish(cf_mraw *r, cf_entry *e);

/* ---- (end of the shared part) ----------------------------------------- */

typedef struct cf_mwriter cf_mwriter;
int cf_manifest_begin(cf_mwriter **out);
/* Thread-compatible: call from one thread. */
int cf_manifest_add(cf_mwriter *w, const cf_entry *e);
/* An entry's line as a manifest holds it (without the newline): the
 * previous set's line of a file that has not changed. */
int cf_manifest_add_line(cf_mwriter *w, const char *line, size_t len);
uint64_t cf_manifest_count(cf_mwriter *w);
/* Read back what was added, in order (a spool used as a temporary list,
 * never committed): rewind once, then 1 with *e filled (clear it after),
 * 0 at the end, -1 error. */
int cf_manifest_spool_rewind(cf_mwriter *w);
int cf_manifest_spool_next(cf_mwriter *w, cf_entry *e);
/* Write sets/<set_id>: header (borrowed), spooled entries, end line. */
int cf_manifest_commit(cf_mwriter *w, cf_repo *r, const char *set_id, json_t *header);
void cf_manifest_free(cf_mwriter *w);

typedef struct cf_mreader cf_mreader;
/* Open sets/<set_id>; *header receives the header (new reference). */
int cf_manifest_open(cf_repo *r, const char *set_id, cf_mreader **out, json_t **header);
/* 1: *e filled (clear it after), 0: end reached and verified, -1 error. */
int cf_manifest_next(cf_mreader *m, cf_entry *e);
/* As cf_manifest_next, but a long file line is first read only as far as
 * its path (cf_entry_parse_head) and handed to pass: when pass returns
 * nonzero the line is counted and not parsed, and the result is 2 (e
 * empty). The trailer is still checked at the end. */
int cf_manifest_next_skim(cf_mreader *m, cf_entry *e, int (*pass)(void *ud, const cf_entry *head),
                          void *ud);
/* The line of the entry the last call returned (1), without its newline:
 * valid until the next call. */
const char *cf_manifest_line(const cf_mreader *m, size_t *len);
void cf_manifest_close(cf_mreader *m);
/* Only the header line (cheap: stops reading after the first line). */
int cf_manifest_header(cf_repo *r, const char *set_id, json_t **header);
/* The entry of component name in a set header's "components" (borrowed),
 * or NULL. */
json_t *cf_set_component(json_t *header, const char *name);

/* Set ids of the repository, sorted oldest first (ids sort by time). */
int cf_sets_list(cf_repo *r, char ***ids, size_t *n);
void cf_strv_free(char **v, size_t n);

/* Path helpers: JSON strings must be UTF-8; other names go hex-encoded. */
void cf_json_set_name(json_t *obj, const char *key, const char *value);
char *cf_json_get_name(json_t *obj, const char *key); /* malloc'd or NULL */
/* A name stored as hex (KEY_hex): malloc'd, NULL if malformed or holding NUL. */
char *cf_name_from_hex(const char *hex);

#endif
