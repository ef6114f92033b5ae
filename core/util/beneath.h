/*
 * Opening untrusted relative paths beneath a directory.
 *
 * Every path a restore takes from a set is resolved from a directory
 * descriptor, never through a symbolic link and never above that
 * directory: openat2() with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS where
 * the kernel has it, otherwise one component at a time with O_NOFOLLOW.
 * A symbolic link anywhere on the way fails with ELOOP (or ENOTDIR), so a
 * link that a hostile set placed in the tree cannot redirect a later write,
 * whichever thread makes it.
 */
#ifndef CF_BENEATH_H
#define CF_BENEATH_H

#include <sys/types.h>

/* 0 if rel is a relative path of plain names: not empty, not absolute,
 * no empty, "." or ".." segment, no NUL (it is a C string). */
int cf_path_safe(const char *rel);

/* Open rel beneath dirfd with open(2) flags (O_NOFOLLOW and O_CLOEXEC are
 * added). rel must pass cf_path_safe. Returns a descriptor, or -1 with
 * errno set (ELOOP/ENOTDIR: a symbolic link or a non-directory is in the
 * way; EXDEV or EINVAL: the path would leave dirfd). */
int cf_beneath_open(int dirfd, const char *rel, int flags, mode_t mode);

/* Open the directory that holds rel's last segment (dirfd itself, dup'd,
 * for a one-segment path) and point *base at that segment inside rel.
 * With mkmode != 0, missing directories on the way are created with that
 * mode. Returns a directory descriptor or -1 with errno set. */
int cf_beneath_parent(int dirfd, const char *rel, mode_t mkmode, const char **base);

/* Tests: 1 forces the component-by-component walk (as on a kernel
 * without openat2). */
extern int cf_beneath_no_openat2;

#endif
