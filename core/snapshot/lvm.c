/*
 * LVM snapshots, through the lvm2 tools (Debian has no maintained C
 * library for them): the LV holding the paths is found from their device
 * (st_dev -> /sys/dev/block/M:m/dm -> lvs), a read-only snapshot LV is
 * created next to it (thin, or classic with a size), tagged
 * CF_FSSNAP_LVM_TAG, activated, and mounted read-only on a private
 * directory under CF_FSSNAP_RUN_DIR, without replaying the journal: the
 * device-mapper suspend behind lvcreate freezes the file system, so the
 * snapshot is clean.
 */
#include "snapshot/snapshot_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

#define LVM_TIMEOUT 300

typedef struct lvm_snap {
    cf_fssnap base;
    char *vg, *name; /* the snapshot LV */
    char *mnt;       /* where it is mounted, NULL when it is not */
} lvm_snap;

/* The LV holding the request's paths. */
typedef struct lv_info {
    char *vg, *lv, *pool;
    char *fstype;
} lv_info;

static void lv_info_free(lv_info *l)
{
    free(l->vg);
    free(l->lv);
    free(l->pool);
    free(l->fstype);
}

char *cf_fssnap_dm_name(const char *vg, const char *lv)
{
    cf_buf b = {0};
    for (int part = 0; part < 2; part++) {
        const char *s = part ? lv : vg;
        if (part)
            cf_buf_append(&b, "-", 1);
        for (; *s; s++) {
            cf_buf_append(&b, s, 1);
            if (*s == '-')
                cf_buf_append(&b, "-", 1);
        }
    }
    cf_buf_append(&b, "", 1);
    return (char *)b.data;
}

int cf_fssnap_size_valid(const char *s)
{
    size_t i = 0, d = 0;
    while (s[i] >= '0' && s[i] <= '9')
        i++, d++;
    if (s[i] == '.') {
        i++;
        while (s[i] >= '0' && s[i] <= '9')
            i++, d++;
    }
    if (d == 0)
        return 0;
    if (s[i] && strchr("bBsSkKmMgGtTpPeE", s[i]))
        i++;
    return s[i] == 0;
}

/* The extra environment of every lvm tool. Without a udev daemon (a
 * container), device-mapper must not wait for udev to make the device
 * nodes, and makes them itself. */
static char *const *tool_env(void)
{
    static char *with_udev[] = {"LVM_SUPPRESS_FD_WARNINGS=1", NULL};
    static char *no_udev[] = {"LVM_SUPPRESS_FD_WARNINGS=1", "DM_DISABLE_UDEV=1", NULL};
    return access("/run/udev/control", F_OK) == 0 ? with_udev : no_udev;
}

/* Output of a tool, trimmed to its last lines, one line. */
static char *tidy(const char *text)
{
    size_t n = strlen(text);
    const char *s = n > 1200 ? text + n - 1200 : text;
    cf_buf b = {0};
    for (; *s; s++) {
        if (*s == '\n') {
            if (b.len && s[1])
                cf_buf_append(&b, "; ", 2);
        } else if (*s != '\r') {
            if (!(*s == ' ' && (!b.len || b.data[b.len - 1] == ' ')))
                cf_buf_append(&b, s, 1);
        }
    }
    cf_buf_append(&b, "", 1);
    return (char *)b.data;
}

/* Run an lvm tool; 0 (stdout in *out when out is not NULL), or -1 with
 * cf_fail naming the command and quoting what it said. */
static int lvm(char *const *argv, char **out)
{
    char *o = NULL, *e = NULL;
    int st = cf_fssnap_exec(argv, tool_env(), LVM_TIMEOUT, &o, &e);
    if (st < 0 && strstr(cf_error(), ": not found in ")) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", cf_error());
        cf_fail("%s (LVM snapshots need the Debian package lvm2)", msg);
    }
    if (st > 0) {
        char *cmd = cf_fssnap_cmdline(argv);
        char *said = tidy(e && *e ? e : o ? o : "");
        cf_fail("%s failed (exit %d): %s", cmd, st, *said ? said : "no message");
        free(said);
        free(cmd);
    }
    free(e);
    if (st == 0 && out)
        *out = o;
    else
        free(o);
    return st == 0 ? 0 : -1;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

size_t cf_fssnap_split_fields(char *line, char **f, size_t max)
{
    size_t n = 0;
    for (char *t = line; t && n < max;) {
        char *bar = strchr(t, '|');
        if (bar)
            *bar = 0;
        f[n++] = trim(t);
        t = bar ? bar + 1 : NULL;
    }
    return n;
}

/* "/sys/dev/block/M:m/dm/<what>", first line; NULL when absent. */
static char *dm_attr(dev_t dev, const char *what)
{
    char path[128], buf[256];
    snprintf(path, sizeof path, "/sys/dev/block/%u:%u/dm/%s", major(dev), minor(dev), what);
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *r = NULL;
    if (fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\n")] = 0;
        r = cf_strdup(trim(buf));
    }
    fclose(f);
    return r;
}

/* Check that the request's paths lie on one LV, mounted; fill *l. */
static int locate(const cf_fssnap_req *rq, const cf_fssnap_mount *m, size_t nm, lv_info *l)
{
    memset(l, 0, sizeof *l);
    const cf_fssnap_path *p0 = &rq->p[0];
    for (size_t i = 1; i < rq->n; i++)
        if (rq->p[i].dev != p0->dev) {
            char w0[1024];
            snprintf(w0, sizeof w0, "%s", cf_fssnap_where(m, nm, p0->anchor));
            return cf_fail("%s lies on %s, %s on %s: one snapshot covers one logical volume; "
                           "put them in separate components",
                           cf_fssnap_show(p0, 0), w0, cf_fssnap_show(&rq->p[i], 1),
                           cf_fssnap_where(m, nm, rq->p[i].anchor));
        }
    char *dmname = dm_attr(p0->dev, "name");
    char *uuid = dm_attr(p0->dev, "uuid");
    int rc = 0;
    if (!dmname)
        rc = cf_fail("%s lies on %s (device %u:%u), which is not an LVM logical volume",
                     cf_fssnap_show(p0, 0), cf_fssnap_where(m, nm, p0->anchor), major(p0->dev),
                     minor(p0->dev));
    else if (!uuid || strncmp(uuid, "LVM-", 4) != 0)
        rc = cf_fail("%s lies on device-mapper device %s (%s), which is not an LVM logical "
                     "volume (its uuid: %s)",
                     cf_fssnap_show(p0, 0), dmname, cf_fssnap_where(m, nm, p0->anchor),
                     uuid ? uuid : "none");
    char *out = NULL;
    if (rc == 0) {
        char *dev = cf_asprintf("/dev/mapper/%s", dmname);
        char *argv[] = {"lvs",         "--noheadings",
                        "--separator", "|",
                        "-o",          "vg_name,lv_name,pool_lv,lv_kernel_major,lv_kernel_minor",
                        dev,           NULL};
        rc = lvm(argv, &out);
        if (rc != 0)
            cf_error_prefix("%s: finding the LV of device-mapper device %s", cf_fssnap_show(p0, 0),
                            dmname);
        free(dev);
    }
    if (rc == 0) {
        char *f[5] = {0};
        char *save = NULL;
        char *line = strtok_r(out, "\n", &save);
        size_t nf = line ? cf_fssnap_split_fields(line, f, 5) : 0;
        unsigned kmaj = 0, kmin = 0;
        if (nf < 5 || sscanf(f[3], "%u", &kmaj) != 1 || sscanf(f[4], "%u", &kmin) != 1 ||
            !f[0][0] || !f[1][0])
            rc = cf_fail("%s: lvs said nothing usable about %s", cf_fssnap_show(p0, 0), dmname);
        else if (kmaj != major(p0->dev) || kmin != minor(p0->dev))
            rc = cf_fail("%s: lvs names %s/%s for device %s, but that LV is device %u:%u, not "
                         "%u:%u",
                         cf_fssnap_show(p0, 0), f[0], f[1], dmname, kmaj, kmin, major(p0->dev),
                         minor(p0->dev));
        else {
            l->vg = cf_strdup(f[0]);
            l->lv = cf_strdup(f[1]);
            l->pool = cf_strdup(f[2]);
        }
    }
    free(out);
    /* Every path is shown by a mount of that LV, of a file system that a
     * second, read-only mount of a copy can show. */
    for (size_t i = 0; i < rq->n && rc == 0; i++) {
        const cf_fssnap_mount *e = cf_fssnap_mount_of(m, nm, rq->p[i].anchor);
        if (!e || e->major != major(p0->dev) || e->minor != minor(p0->dev))
            rc =
                cf_fail("%s: no mount of %s/%s (device %u:%u) shows it in /proc/self/mountinfo",
                        cf_fssnap_show(&rq->p[i], 0), l->vg, l->lv, major(p0->dev), minor(p0->dev));
        else if (strcmp(e->fstype, "btrfs") == 0)
            rc = cf_fail("%s lies on btrfs on LV %s/%s: a copy of a mounted btrfs cannot be "
                         "mounted beside it; use `snapshot: btrfs`",
                         cf_fssnap_show(&rq->p[i], 0), l->vg, l->lv);
        else if (!l->fstype)
            l->fstype = cf_strdup(e->fstype);
    }
    free(dmname);
    free(uuid);
    if (rc != 0)
        lv_info_free(l);
    return rc;
}

/* mkdir (0700) if missing; must then be a real directory of ours. */
static int private_dir(const char *dir)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return cf_fail_errno("cannot create %s", dir);
    struct stat st;
    if (lstat(dir, &st) != 0)
        return cf_fail_errno("%s", dir);
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022))
        return cf_fail("%s is not a directory of uid %u that only it may write to", dir,
                       (unsigned)geteuid());
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int lv_remove(const char *vg, const char *name)
{
    char *lv = cf_asprintf("%s/%s", vg, name);
    char *argv[] = {"lvremove", "--force", "--yes", lv, NULL};
    int rc = -1;
    /* udev's probe of a new device may hold it open for a moment */
    for (int attempt = 0; attempt < 5 && rc != 0; attempt++) {
        if (attempt)
            sleep_ms(1000);
        rc = lvm(argv, NULL);
    }
    free(lv);
    return rc;
}

/* Unmount, waiting a little for a reader that is about to let go. */
static int unmount(const char *dir)
{
    for (int i = 0; i < 50; i++) {
        if (umount2(dir, UMOUNT_NOFOLLOW) == 0)
            return 0;
        if (errno != EBUSY)
            break;
        sleep_ms(100);
    }
    return cf_fail_errno("cannot unmount %s", dir);
}

static int lvm_take(const cf_fssnap_req *rq, cf_fssnap **out)
{
    if (rq->size && !cf_fssnap_size_valid(rq->size))
        return cf_fail("snapshot size '%s': give a number and a unit, as lvcreate -L takes it "
                       "(512M, 2G)",
                       rq->size);
    cf_fssnap_mount *m;
    size_t nm;
    if (cf_fssnap_mounts_load(&m, &nm) != 0)
        return -1;
    lv_info l;
    if (locate(rq, m, nm, &l) != 0) {
        cf_fssnap_mounts_free(m, nm);
        return -1;
    }
    int rc = 0;
    if (!rq->size && !l.pool[0])
        rc = cf_fail("%s lies on LV %s/%s, which is not a thin volume: a thin snapshot needs "
                     "one; give a snapshot size for a classic snapshot (free extents in %s)",
                     cf_fssnap_show(&rq->p[0], 0), l.vg, l.lv, l.vg);
    if (rc == 0) {
        char *what = cf_asprintf("a snapshot of LV %s/%s", l.vg, l.lv);
        rc = cf_fssnap_check_nested(rq, m, nm, what, CF_FSSNAP_RUN_DIR);
        free(what);
    }
    if (rc != 0) {
        lv_info_free(&l);
        cf_fssnap_mounts_free(m, nm);
        return -1;
    }
    lvm_snap *s = cf_calloc(1, sizeof *s);
    s->base.ops = &cf_fssnap_lvm_ops;
    s->vg = cf_strdup(l.vg);
    s->name = cf_fssnap_name_new(rq->tag);
    char *origin = cf_asprintf("%s/%s", l.vg, l.lv);
    char *argv[20];
    int a = 0;
    argv[a++] = "lvcreate";
    argv[a++] = "--snapshot";
    argv[a++] = "--name";
    argv[a++] = s->name;
    argv[a++] = "--permission";
    argv[a++] = "r";
    /* thin snapshots skip activation unless told otherwise */
    argv[a++] = "--setactivationskip";
    argv[a++] = "n";
    argv[a++] = "--activate";
    argv[a++] = "y";
    argv[a++] = "--addtag";
    argv[a++] = CF_FSSNAP_LVM_TAG;
    if (rq->size) {
        argv[a++] = "--size";
        argv[a++] = (char *)rq->size;
    }
    argv[a++] = "--yes";
    argv[a++] = origin;
    argv[a] = NULL;
    rc = lvm(argv, NULL);
    if (rc != 0)
        cf_error_prefix("%s: snapshot of LV %s", cf_fssnap_show(&rq->p[0], 0), origin);
    int created = rc == 0;
    char *dmname = cf_fssnap_dm_name(s->vg, s->name);
    char *dev = cf_asprintf("/dev/mapper/%s", dmname);
    if (rc == 0) {
        /* the node comes from udev, or from lvcreate itself without it */
        struct stat st;
        int i = 0;
        while (!(stat(dev, &st) == 0 && S_ISBLK(st.st_mode)) && i++ < 100)
            sleep_ms(100);
        if (!(stat(dev, &st) == 0 && S_ISBLK(st.st_mode)))
            rc = cf_fail("snapshot %s/%s was created but its device %s did not appear", s->vg,
                         s->name, dev);
    }
    char *mnt = NULL;
    if (rc == 0 && (private_dir("/run/coffer") != 0 || private_dir(CF_FSSNAP_RUN_DIR) != 0))
        rc = -1;
    if (rc == 0) {
        mnt = cf_asprintf("%s/%s", CF_FSSNAP_RUN_DIR, s->name);
        if (mkdir(mnt, 0700) != 0)
            rc = cf_fail_errno("cannot create %s", mnt);
    }
    if (rc == 0) {
        /* Frozen by lvcreate's suspend, the snapshot's journal holds
         * nothing to replay, and a read-only device could not replay it. */
        const char *opts = "";
        if (strcmp(l.fstype, "ext4") == 0 || strcmp(l.fstype, "ext3") == 0)
            opts = "noload";
        else if (strcmp(l.fstype, "xfs") == 0)
            opts = "nouuid,norecovery"; /* the origin is mounted with the same uuid */
        if (mount(dev, mnt, l.fstype, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) != 0) {
            rc = cf_fail_errno("mount -t %s -o ro%s%s %s %s", l.fstype, *opts ? "," : "", opts, dev,
                               mnt);
            rmdir(mnt);
        } else {
            s->mnt = mnt;
            mnt = NULL;
        }
    }
    free(mnt);
    if (rc != 0) {
        if (created) {
            char saved[2048];
            snprintf(saved, sizeof saved, "%s", cf_error());
            if (lv_remove(s->vg, s->name) != 0)
                cf_log(CF_LOG_WARN, "%s", cf_error());
            cf_fail("%s", saved);
        }
        free(s->vg);
        free(s->name);
        free(s);
        s = NULL;
    } else {
        s->base.desc = cf_asprintf("lvm snapshot %s/%s of LV %s, mounted at %s", s->vg, s->name,
                                   origin, s->mnt);
        int has_root = 0;
        for (size_t i = 0; i < rq->n; i++) {
            const cf_fssnap_mount *e = cf_fssnap_mount_of(m, nm, rq->p[i].anchor);
            char *top = strcmp(e->root, "/") == 0 ? cf_strdup(s->mnt)
                                                  : cf_asprintf("%s%s", s->mnt, e->root);
            cf_fssnap_add_map(&s->base, rq->p[i].rel, rq->p[i].abs, e->point, top);
            free(top);
            has_root |= strcmp(rq->p[i].rel, ".") == 0;
        }
        const cf_fssnap_mount *e = cf_fssnap_mount_of(m, nm, rq->top.abs);
        if (!has_root && rq->top.dev == rq->p[0].dev && e && e->major == major(rq->top.dev) &&
            e->minor == minor(rq->top.dev)) {
            char *top = strcmp(e->root, "/") == 0 ? cf_strdup(s->mnt)
                                                  : cf_asprintf("%s%s", s->mnt, e->root);
            cf_fssnap_add_map(&s->base, ".", rq->top.abs, e->point, top);
            free(top);
        }
        cf_fssnap_set_skip(&s->base, rq, s->mnt);
        cf_log(CF_LOG_DEBUG, "took %s", s->base.desc);
    }
    free(dev);
    free(dmname);
    free(origin);
    lv_info_free(&l);
    cf_fssnap_mounts_free(m, nm);
    *out = s ? &s->base : NULL;
    return rc;
}

static int lvm_release(cf_fssnap *base)
{
    lvm_snap *s = (lvm_snap *)base;
    int rc = 0;
    if (s->mnt) {
        rc = unmount(s->mnt);
        if (rc == 0)
            rmdir(s->mnt);
    }
    if (rc == 0)
        rc = lv_remove(s->vg, s->name);
    if (rc != 0)
        cf_error_prefix("deleting %s", base->desc);
    else
        cf_log(CF_LOG_DEBUG, "deleted %s", base->desc);
    free(s->vg);
    free(s->name);
    free(s->mnt);
    return rc;
}

/* Remove one dead run's snapshot LV: unmount it wherever this mount
 * namespace shows it, then lvremove. */
static int remove_leftover(const char *vg, const char *name)
{
    char *dmname = cf_fssnap_dm_name(vg, name);
    char *dev = cf_asprintf("/dev/mapper/%s", dmname);
    free(dmname);
    int rc = 0;
    struct stat st;
    if (stat(dev, &st) == 0 && S_ISBLK(st.st_mode)) {
        cf_fssnap_mount *m;
        size_t nm;
        rc = cf_fssnap_mounts_load(&m, &nm);
        if (rc == 0) {
            for (size_t i = nm; rc == 0 && i-- > 0;)
                if (m[i].major == major(st.st_rdev) && m[i].minor == minor(st.st_rdev))
                    rc = unmount(m[i].point);
            cf_fssnap_mounts_free(m, nm);
        }
    }
    free(dev);
    char *mnt = cf_asprintf("%s/%s", CF_FSSNAP_RUN_DIR, name);
    if (rc == 0 && rmdir(mnt) != 0 && errno != ENOENT)
        cf_log(CF_LOG_WARN, "cannot remove %s: %s", mnt, strerror(errno));
    free(mnt);
    if (rc == 0)
        rc = lv_remove(vg, name);
    if (rc != 0)
        cf_error_prefix("leftover snapshot %s/%s", vg, name);
    return rc;
}

static int has_tag(const char *tags, const char *tag)
{
    size_t l = strlen(tag);
    for (const char *p = tags; p && *p;) {
        if (strncmp(p, tag, l) == 0 && (p[l] == ',' || p[l] == 0))
            return 1;
        p = strchr(p, ',');
        if (p)
            p++;
    }
    return 0;
}

static int lvm_sweep(const cf_fssnap_req *rq)
{
    cf_fssnap_mount *m;
    size_t nm;
    if (cf_fssnap_mounts_load(&m, &nm) != 0)
        return -1;
    lv_info l;
    int rc = locate(rq, m, nm, &l);
    cf_fssnap_mounts_free(m, nm);
    if (rc != 0)
        return -1;
    char *out = NULL;
    char *argv[] = {"lvs", "--noheadings",           "--separator", "|",
                    "-o",  "lv_name,origin,lv_tags", l.vg,          NULL};
    if (lvm(argv, &out) != 0) {
        lv_info_free(&l);
        return -1;
    }
    int removed = 0;
    char first[2048] = "";
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[3] = {0};
        cf_fssnap_owner o;
        if (cf_fssnap_split_fields(line, f, 3) < 2 || !cf_fssnap_name_parse(f[0], rq->tag, &o))
            continue;
        if (!f[2] || !has_tag(f[2], CF_FSSNAP_LVM_TAG) || strcmp(f[1], l.lv) != 0) {
            cf_log(CF_LOG_WARN,
                   "LV %s/%s: left alone: named like coffer's snapshots but not one of LV %s/%s "
                   "tagged %s",
                   l.vg, f[0], l.vg, l.lv, CF_FSSNAP_LVM_TAG);
            continue;
        }
        cf_fssnap_owner_state state = cf_fssnap_owner_check(&o);
        if (state == CF_OWNER_ALIVE) {
            cf_log(CF_LOG_DEBUG, "LV %s/%s: in use by coffer process %llu", l.vg, f[0], o.pid);
        } else if (state == CF_OWNER_UNKNOWN) {
            cf_log(CF_LOG_INFO,
                   "LV %s/%s: left alone: taken by coffer process %llu of another pid namespace",
                   l.vg, f[0], o.pid);
        } else if (remove_leftover(l.vg, f[0]) == 0) {
            cf_log(CF_LOG_INFO,
                   "removed LV %s/%s: a snapshot of %s/%s left by coffer process %llu, which is "
                   "gone",
                   l.vg, f[0], l.vg, l.lv, o.pid);
            removed++;
        } else if (!first[0]) {
            snprintf(first, sizeof first, "%s", cf_error());
        }
    }
    free(out);
    /* Mount directories of dead runs whose LV is gone already */
    DIR *d = opendir(CF_FSSNAP_RUN_DIR);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        cf_fssnap_owner o;
        if (!cf_fssnap_name_parse(de->d_name, rq->tag, &o) ||
            cf_fssnap_owner_check(&o) != CF_OWNER_GONE)
            continue;
        char *dir = cf_asprintf("%s/%s", CF_FSSNAP_RUN_DIR, de->d_name);
        rmdir(dir); /* only when empty: never anything mounted there */
        free(dir);
    }
    if (d)
        closedir(d);
    lv_info_free(&l);
    if (first[0])
        return cf_fail("%s", first);
    return removed;
}

const cf_fssnap_ops cf_fssnap_lvm_ops = {
    .kind = "lvm", .take = lvm_take, .release = lvm_release, .sweep = lvm_sweep};
