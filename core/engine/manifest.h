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
int cf_entry_from_json(json_t *j, cf_entry *e); /* -1 with cf_error on malformed */
/* The same from a line's text, for the common entry lines (see
 * manifest_fast.c): 1 parsed into e, 0 not taken (use the tree reader). */
int cf_entry_parse_fast(const char *line, size_t len, cf_entry *e);
const char *cf_ent_kind_name(cf_ent_kind k);

typedef struct cf_mwriter cf_mwriter;
int cf_manifest_begin(cf_mwriter **out);
/* Thread-compatible: call from one thread. */
int cf_manifest_add(cf_mwriter *w, const cf_entry *e);
uint64_t cf_manifest_count(cf_mwriter *w);
/* Write sets/<set_id>: header (borrowed), spooled entries, end line. */
int cf_manifest_commit(cf_mwriter *w, cf_repo *r, const char *set_id, json_t *header);
void cf_manifest_free(cf_mwriter *w);

typedef struct cf_mreader cf_mreader;
/* Open sets/<set_id>; *header receives the header (new reference). */
int cf_manifest_open(cf_repo *r, const char *set_id, cf_mreader **out, json_t **header);
/* 1: *e filled (clear it after), 0: end reached and verified, -1 error. */
int cf_manifest_next(cf_mreader *m, cf_entry *e);
void cf_manifest_close(cf_mreader *m);
/* Only the header line (cheap: stops reading after the first line). */
int cf_manifest_header(cf_repo *r, const char *set_id, json_t **header);

/* Set ids of the repository, sorted oldest first (ids sort by time). */
int cf_sets_list(cf_repo *r, char ***ids, size_t *n);
void cf_strv_free(char **v, size_t n);

/* Path helpers: JSON strings must be UTF-8; other names go hex-encoded. */
void cf_json_set_name(json_t *obj, const char *key, const char *value);
char *cf_json_get_name(json_t *obj, const char *key); /* malloc'd or NULL */
/* A name stored as hex (KEY_hex): malloc'd, NULL if malformed or holding NUL. */
char *cf_name_from_hex(const char *hex);

#endif
