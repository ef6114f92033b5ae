/* coffer mount: the policy's sets as a read-only file system (mount/). */
#include <stdio.h>

#include "cli/cli.h"
#include "engine/run.h"
#include "mount/mount.h"
#include "util/util.h"

static const cli_spec spec_mount = {
    "mount",
    "usage: coffer mount -p POLICY [--target NAME] [--cache-size SIZE] MOUNTPOINT\n"
    "Show every set of the policy as a read-only file system on MOUNTPOINT (an\n"
    "empty directory): sets/<set id>/<component>/... holds a files component as\n"
    "it was backed up, and a database component's dump streams as files; latest\n"
    "points to the newest set. Files are read from the repository on demand.\n"
    "Runs in the foreground until unmounted: Ctrl-C, SIGTERM, `fusermount3 -u\n"
    "MOUNTPOINT` or `umount MOUNTPOINT` unmount it and end coffer (exit 0).\n"
    "The repository holds a shared lock meanwhile. See docs/mount.md.\n",
    (const cli_use[]){
        {OPT_POLICY, "FILE", "the policy (required)", 0},
        {OPT_TARGET, "NAME", "the policy's target to use (default: the first)", 0},
        {OPT_CACHE_SIZE, "SIZE", "memory for decrypted chunks, e.g. 64M or 1G (default 32M)", 0},
        {-1, NULL, NULL, 0}},
    1};

int cmd_mount(int argc, char **argv)
{
    args a = {0};
    if (parse(argc, argv, &spec_mount, &a) != 0)
        return CF_EXIT_USAGE;
    cf_mount_opts o = {0};
    o.cache_size = CF_MOUNT_CACHE_DEFAULT;
    int rc = CF_EXIT_USAGE;
    if (need_policy("mount", &a))
        goto out;
    if (a.npos != 1) {
        rc = usage_error("mount", "MOUNTPOINT is required");
        goto out;
    }
    if (a.cache_size && cf_mount_parse_size(a.cache_size, &o.cache_size) != 0) {
        rc = usage_error("mount", "--cache-size needs a size such as 64M, not '%s'", a.cache_size);
        goto out;
    }
    o.mountpoint = a.pos[0];
    if (cf_mount_check_point(o.mountpoint) != 0) {
        rc = die(CF_EXIT_FAILED);
        goto out;
    }
    cf_run *run;
    rc = cli_open_parsed("mount", 1, CLI_LOCK_SHARED, &a, &run);
    if (rc)
        goto out;
    rc = cf_mount_run(run, &o) == 0 ? CF_EXIT_OK : die(CF_EXIT_FAILED);
    cf_run_close(run);
out:
    args_free(&a);
    return rc;
}
