/*
 * Filesystem snapshots for files components: a read-only, point-in-time
 * image of the btrfs subvolume or LVM logical volume that holds a
 * component's paths. The backup walks the snapshot instead of the live
 * tree (entries keep their relative paths; only the absolute paths read
 * from change) and deletes it afterwards.
 *
 * Where a snapshot lives:
 *  - btrfs: a read-only snapshot of the whole subvolume, in a directory
 *    CF_FSSNAP_DIR (0700, root's) beside the subvolume (in the directory
 *    holding the subvolume's root, when that is on the same btrfs file
 *    system), else at the top of the subvolume itself; cf_fssnap_skip()
 *    says when that directory lies in the policy root.
 *  - lvm: a snapshot LV (thin, or classic with a size) in the origin's
 *    volume group, tagged CF_FSSNAP_LVM_TAG, mounted read-only on a 0700
 *    directory under CF_FSSNAP_RUN_DIR.
 *
 * A snapshot's name is "coffer_<tag>_<owner>": the owner identifies the
 * process that took it (boot, pid namespace, pid, start time), so that
 * cf_fssnap_sweep can tell a dead run's leftover from a running backup's
 * snapshot. Everything needs root (CAP_SYS_ADMIN).
 *
 * Errors: -1 (NULL) after cf_fail (util/util.h), naming the path, the
 * subvolume or LV, and the call or command that failed with its output.
 */
#ifndef CF_SNAPSHOT_H
#define CF_SNAPSHOT_H

#include <stddef.h>

/* btrfs: the directory that holds coffer's snapshots. */
#define CF_FSSNAP_DIR ".coffer-snapshots"
/* lvm: where snapshots are mounted (one 0700 directory per snapshot). */
#define CF_FSSNAP_RUN_DIR "/run/coffer/fssnap"
/* lvm: the tag every snapshot LV coffer creates carries. */
#define CF_FSSNAP_LVM_TAG "coffer_fssnap"
/* Longest tag accepted (LV names are limited to 127 characters). */
#define CF_FSSNAP_TAG_MAX 40

/* One snapshot taken; owned by the caller until cf_fssnap_release. */
typedef struct cf_fssnap cf_fssnap;

/* Kinds compiled in: "btrfs", "lvm". 1 if kind is known. */
int cf_fssnap_kind_valid(const char *kind);

/* 1 if tag can name snapshots: 1 to CF_FSSNAP_TAG_MAX characters of
 * [A-Za-z0-9._-], not starting with '-' or '.'. */
int cf_fssnap_tag_valid(const char *tag);

/* Take one read-only snapshot of whatever holds root/<paths[i]> for every
 * i. All paths must lie on one btrfs subvolume / one LVM logical volume,
 * with no other mount or (btrfs) nested subvolume inside them, as these
 * would be empty in the snapshot; else it fails naming the path and what
 * it lies on. A path that does not exist is looked up by its nearest
 * existing parent (the walk reports it missing, as it would live).
 * tag: policy name and component, see cf_fssnap_tag_valid. size_opt: lvm
 * only: NULL for a thin snapshot (the LV must be thin), or the size of a
 * classic snapshot ("1G", lvcreate -L syntax); must be NULL for btrfs. */
int cf_fssnap_take(const char *kind, const char *root, char *const *paths, size_t npaths,
                   const char *tag, const char *size_opt, cf_fssnap **out);

/* Absolute path inside the snapshot that holds root/rel, for rel one of
 * the paths given to take, or "." for root itself when root lies in the
 * snapshot. Symbolic links on the way to rel were resolved in the live
 * tree when the snapshot was taken (the last part of rel is not: the walk
 * lstat()s it), so map each path rather than join rel to the map of ".":
 * an absolute link in the snapshot leads back into the live tree.
 * malloc'd; NULL with cf_fail for another rel. */
char *cf_fssnap_map(const cf_fssnap *s, const char *rel);

/* Path relative to root that the walk must leave out (coffer's own
 * snapshot directory, when it lies in the policy root), or NULL. Owned
 * by s. */
const char *cf_fssnap_skip(const cf_fssnap *s);

/* For logs and the set: "btrfs snapshot /srv/.coffer-snapshots/NAME of
 * subvolume /srv/app". Owned by s. */
const char *cf_fssnap_describe(const cf_fssnap *s);

/* Delete the snapshot (unmount, remove) and free s, also when deleting
 * fails; 0 or -1 with cf_fail (the snapshot is then left for the next
 * sweep). NULL is a no-op. */
int cf_fssnap_release(cf_fssnap *s);

/* Remove the snapshots of the subvolume / LV holding the paths that
 * coffer processes which are gone (SIGKILL, power loss) left for this
 * tag: only names coffer gives (and, for btrfs, read-only snapshots of
 * that subvolume; for lvm, LVs with CF_FSSNAP_LVM_TAG whose origin is
 * that LV); a snapshot whose owner still runs, or whose owner cannot be
 * judged (another pid namespace of this boot), is left alone. Returns
 * the number removed, -1 on error. */
int cf_fssnap_sweep(const char *kind, const char *root, char *const *paths, size_t npaths,
                    const char *tag);

#endif
