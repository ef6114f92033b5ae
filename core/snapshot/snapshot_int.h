/*
 * Inside core/snapshot: the backend interface (btrfs.c, lvm.c), the
 * request every backend gets with its paths resolved (snapshot.c), the
 * owner encoded in snapshot names (owner.c), /proc/self/mountinfo
 * (mounts.c) and running the LVM tools (exec.c).
 */
#ifndef CF_SNAPSHOT_INT_H
#define CF_SNAPSHOT_INT_H

#include <stdint.h>
#include <sys/types.h>

#include "snapshot/snapshot.h"

/* ---- request ----------------------------------------------------------- */

/* One path of a request, resolved like the walk resolves it: symbolic
 * links followed in every part but the last (the walk lstat()s it). */
typedef struct cf_fssnap_path {
    const char *rel; /* as given; "." is root itself */
    char *abs;       /* absolute, canonical but for its last part */
    char *anchor;    /* abs when it is a directory, else the nearest existing
                      * directory above it: where its file system is asked */
    dev_t dev;       /* st_dev of abs (lstat), or of anchor when abs is missing */
    int exists, is_dir;
} cf_fssnap_path;

typedef struct cf_fssnap_req {
    const char *kind, *tag, *size;
    char *root;        /* canonical root */
    cf_fssnap_path *p; /* the paths given */
    size_t n;
    cf_fssnap_path top; /* root itself, for mapping "." */
} cf_fssnap_req;

/* Common part of every snapshot; a backend's struct starts with it. */
typedef struct cf_fssnap_ops cf_fssnap_ops;
struct cf_fssnap {
    const cf_fssnap_ops *ops;
    char *desc;           /* cf_fssnap_describe */
    char *skip;           /* cf_fssnap_skip, may be NULL */
    char **rel, **mapped; /* cf_fssnap_map's table */
    size_t nmap;
};

struct cf_fssnap_ops {
    const char *kind;
    int (*take)(const cf_fssnap_req *rq, cf_fssnap **out);
    /* Delete the snapshot and free the backend's part (not the common one). */
    int (*release)(cf_fssnap *s);
    int (*sweep)(const cf_fssnap_req *rq);
};

extern const cf_fssnap_ops cf_fssnap_btrfs_ops;
extern const cf_fssnap_ops cf_fssnap_lvm_ops;

/* Record that root/rel (canonical path abs, living under live_top) is
 * found at snap_top/<abs minus live_top> in the snapshot. */
void cf_fssnap_add_map(cf_fssnap *s, const char *rel, const char *abs, const char *live_top,
                       const char *snap_top);
/* Set s->skip to dir relative to the request's root when it lies there. */
void cf_fssnap_set_skip(cf_fssnap *s, const cf_fssnap_req *rq, const char *dir);
/* "data/x (/srv/app/data/x)": a path for messages, in a static buffer of
 * the calling thread (two may be used in one message: slot 0 and 1). */
const char *cf_fssnap_show(const cf_fssnap_path *p, int slot);
/* 1 if path is dir or lies beneath it. */
int cf_fssnap_under(const char *path, const char *dir);

/* ---- owners and names ---------------------------------------------------- */

/* The process that owns a snapshot. */
typedef struct cf_fssnap_owner {
    char boot[9];                         /* first 8 hex digits of the boot id */
    unsigned long long pidns, pid, start; /* pid namespace inode, start time (ticks) */
} cf_fssnap_owner;

typedef enum { CF_OWNER_ALIVE, CF_OWNER_GONE, CF_OWNER_UNKNOWN } cf_fssnap_owner_state;

/* The calling process. */
void cf_fssnap_owner_self(cf_fssnap_owner *o);
/* ALIVE: that process runs; GONE: it cannot run any more (other boot, no
 * such pid, or another process with it); UNKNOWN: another pid namespace
 * of this boot. */
cf_fssnap_owner_state cf_fssnap_owner_check(const cf_fssnap_owner *o);
/* A new name for a snapshot of the calling process:
 * "coffer_<tag>_<boot>.<pidns>.<pid>.<start>.<seq>" (hex but seq). malloc'd. */
char *cf_fssnap_name_new(const char *tag);
/* 1 and *o filled if name is one cf_fssnap_name_new gives for tag
 * (exactly: not a longer tag, nothing appended), else 0. */
int cf_fssnap_name_parse(const char *name, const char *tag, cf_fssnap_owner *o);

/* ---- /proc/self/mountinfo --------------------------------------------- */

typedef struct cf_fssnap_mount {
    unsigned major, minor;
    char *root;  /* the directory of the file system mounted there */
    char *point; /* mount point */
    char *fstype, *source;
} cf_fssnap_mount;

/* Parse mountinfo text (octal escapes decoded). 0, or -1 with cf_fail. */
int cf_fssnap_mounts_parse(const char *text, cf_fssnap_mount **out, size_t *n);
int cf_fssnap_mounts_load(cf_fssnap_mount **out, size_t *n);
void cf_fssnap_mounts_free(cf_fssnap_mount *m, size_t n);
/* The mount that shows path (canonical): the longest mount point above it,
 * the last one mounted there. NULL if none. */
const cf_fssnap_mount *cf_fssnap_mount_of(const cf_fssnap_mount *m, size_t n, const char *path);
/* "ext4 /dev/vda1 mounted at /": what path lies on, for messages (static
 * buffer of the calling thread). */
const char *cf_fssnap_where(const cf_fssnap_mount *m, size_t n, const char *path);
/* Fail (-1, naming it) when a mount lies strictly inside one of the
 * request's directories: the snapshot would show it empty. Mounts under
 * ignore (may be NULL) are left out. */
int cf_fssnap_check_nested(const cf_fssnap_req *rq, const cf_fssnap_mount *m, size_t n,
                           const char *what, const char *ignore);

/* ---- running tools ------------------------------------------------------ */

/* Run argv (argv[0] a bare tool name, found in /usr/sbin, /sbin, /usr/bin
 * or /bin) with stdin from /dev/null, in its own process group, with an
 * environment of PATH and LC_ALL=C plus env_extra (NULL-terminated, may
 * be NULL): nothing of coffer's, no secret. Killed after timeout_s.
 * *out gets its stdout (may be NULL), *err its stderr, malloc'd. Returns
 * its exit status, or -1 with cf_fail when it could not run or was killed. */
int cf_fssnap_exec(char *const *argv, char *const *env_extra, int timeout_s, char **out,
                   char **err);
/* "`lvcreate --snapshot ...`": argv joined for messages, malloc'd. */
char *cf_fssnap_cmdline(char *const *argv);

/* ---- lvm helpers (lvm.c) ------------------------------------------------ */

/* The device-mapper name of vg/lv ("-" doubled in each, joined by "-").
 * malloc'd. */
char *cf_fssnap_dm_name(const char *vg, const char *lv);
/* 1 if s is a size lvcreate -L takes: digits, an optional fraction and
 * an optional unit letter (b s k m g t p e, either case). */
int cf_fssnap_size_valid(const char *s);
/* Split one line of `lvs --separator '|'` in place into at most max
 * trimmed fields, empty ones too (a plain LV has no pool); their number. */
size_t cf_fssnap_split_fields(char *line, char **f, size_t max);

#endif
