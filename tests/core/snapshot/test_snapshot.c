/*
 * core/snapshot without a file system to snapshot: names and their
 * owners, mountinfo, LVM names and sizes, running tools, and the errors
 * take and sweep give before they touch anything. The snapshots
 * themselves are tested on loop devices by fssnap_btrfs.sh and
 * fssnap_lvm.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapshot/snapshot_int.h"
#include "util/util.h"

static void test_kinds_and_tags(void **state)
{
    (void)state;
    assert_true(cf_fssnap_kind_valid("btrfs"));
    assert_true(cf_fssnap_kind_valid("lvm"));
    assert_false(cf_fssnap_kind_valid("zfs"));
    assert_false(cf_fssnap_kind_valid(""));
    assert_false(cf_fssnap_kind_valid(NULL));

    assert_true(cf_fssnap_tag_valid("asterdrive.data"));
    assert_true(cf_fssnap_tag_valid("a_b-c.9"));
    assert_false(cf_fssnap_tag_valid(""));
    assert_false(cf_fssnap_tag_valid(NULL));
    assert_false(cf_fssnap_tag_valid("-x"));
    assert_false(cf_fssnap_tag_valid(".x"));
    assert_false(cf_fssnap_tag_valid("a/b"));
    assert_false(cf_fssnap_tag_valid("a b"));
    char longtag[CF_FSSNAP_TAG_MAX + 2];
    memset(longtag, 'a', sizeof longtag - 1);
    longtag[sizeof longtag - 1] = 0;
    assert_false(cf_fssnap_tag_valid(longtag));
    longtag[CF_FSSNAP_TAG_MAX] = 0;
    assert_true(cf_fssnap_tag_valid(longtag));
}

static void test_names(void **state)
{
    (void)state;
    char *a = cf_fssnap_name_new("app.files");
    char *b = cf_fssnap_name_new("app.files");
    assert_string_not_equal(a, b); /* one process may hold two */
    assert_true(strncmp(a, "coffer_app.files_", 17) == 0);
    /* fits an LV name with the longest tag */
    char longtag[CF_FSSNAP_TAG_MAX + 1];
    memset(longtag, 'x', CF_FSSNAP_TAG_MAX);
    longtag[CF_FSSNAP_TAG_MAX] = 0;
    char *l = cf_fssnap_name_new(longtag);
    assert_true(strlen(l) < 100);
    free(l);

    cf_fssnap_owner o, me;
    cf_fssnap_owner_self(&me);
    assert_int_equal(cf_fssnap_name_parse(a, "app.files", &o), 1);
    assert_string_equal(o.boot, me.boot);
    assert_int_equal(o.pid, (unsigned long long)getpid());
    assert_int_equal(o.pidns, me.pidns);
    assert_int_equal(o.start, me.start);
    assert_true(me.start > 0);
    assert_int_equal(cf_fssnap_owner_check(&o), CF_OWNER_ALIVE);

    /* another tag, a tag that only starts the same, a longer one */
    assert_int_equal(cf_fssnap_name_parse(a, "app", NULL), 0);
    assert_int_equal(cf_fssnap_name_parse(a, "app.file", NULL), 0);
    assert_int_equal(cf_fssnap_name_parse(a, "app.files.x", NULL), 0);
    char *c = cf_fssnap_name_new("app.files_x");
    assert_int_equal(cf_fssnap_name_parse(c, "app.files", NULL), 0);
    free(c);
    /* look-alikes */
    static const char *const bad[] = {
        "coffer_app.files_deadbeef.1.2.3",                   /* a field short */
        "coffer_app.files_deadbeef.1.2.3.0.1",               /* a field more */
        "coffer_app.files_deadbeef.1.2.3.0x",                /* something appended */
        "coffer_app.files_deadbee.1.2.3.0",                  /* boot id: 8 digits */
        "coffer_app.files_DEADBEEF.1.2.3.0",                 /* lower-case hex */
        "coffer_app.files_deadbeef..2.3.0",                  /* empty field */
        "coffer_app.files_deadbeef.1.2.3.a",                 /* sequence: decimal */
        "coffer_app.files_deadbeef.1.2.3.0/",                /* a path */
        "coffer-app.files_deadbeef.1.2.3.0",                 /* prefix */
        "xcoffer_app.files_deadbeef.1.2.3.0",                /* prefix */
        "coffer_app.files_deadbeef.11111111111111111.2.3.0", /* too long */
    };
    for (size_t i = 0; i < CF_ARRAY_LEN(bad); i++)
        assert_int_equal(cf_fssnap_name_parse(bad[i], "app.files", NULL), 0);
    assert_int_equal(cf_fssnap_name_parse("coffer_app.files_deadbeef.1.2.3.0", "app.files", &o), 1);
    assert_string_equal(o.boot, "deadbeef");
    assert_int_equal(o.pidns, 1);
    assert_int_equal(o.pid, 2);
    assert_int_equal(o.start, 3);

    /* owners: another boot, another process with the pid, no process, another namespace */
    assert_int_equal(cf_fssnap_name_parse(a, "app.files", &o), 1);
    cf_fssnap_owner x = o;
    memcpy(x.boot, strcmp(o.boot, "00000000") ? "00000000" : "11111111", 8);
    assert_int_equal(cf_fssnap_owner_check(&x), CF_OWNER_GONE);
    x = o;
    x.start++;
    assert_int_equal(cf_fssnap_owner_check(&x), CF_OWNER_GONE);
    x = o;
    x.pid = 0x7ffffffe; /* above pid_max */
    assert_int_equal(cf_fssnap_owner_check(&x), CF_OWNER_GONE);
    x = o;
    x.pidns++;
    assert_int_equal(cf_fssnap_owner_check(&x), CF_OWNER_UNKNOWN);
    free(a);
    free(b);
}

static const char mountinfo[] =
    "21 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "22 21 0:20 / /proc rw,nosuid - proc proc rw\n"
    "40 21 0:41 / /srv rw shared:5 master:1 - btrfs /dev/loop0 rw,subvol=/\n"
    "41 40 0:42 /app /srv/my\\040app rw - btrfs /dev/loop0 rw,subvol=/app\n"
    "42 21 253:3 /data /var/lib/app rw - xfs /dev/mapper/vg-data rw\n"
    "43 21 253:4 / /srv/my\\040app rw - ext4 /dev/mapper/vg-over rw\n";

static void test_mountinfo(void **state)
{
    (void)state;
    cf_fssnap_mount *m;
    size_t n;
    assert_int_equal(cf_fssnap_mounts_parse(mountinfo, &m, &n), 0);
    assert_int_equal(n, 6);
    assert_string_equal(m[3].point, "/srv/my app");
    assert_string_equal(m[3].root, "/app");
    assert_string_equal(m[3].fstype, "btrfs");
    assert_int_equal(m[4].major, 253);
    assert_int_equal(m[4].minor, 3);
    assert_string_equal(m[4].source, "/dev/mapper/vg-data");

    assert_string_equal(cf_fssnap_mount_of(m, n, "/etc/passwd")->point, "/");
    assert_string_equal(cf_fssnap_mount_of(m, n, "/")->point, "/");
    assert_string_equal(cf_fssnap_mount_of(m, n, "/srv")->point, "/srv");
    assert_string_equal(cf_fssnap_mount_of(m, n, "/srvx")->point, "/");
    assert_string_equal(cf_fssnap_mount_of(m, n, "/var/lib/app/x/y")->source,
                        "/dev/mapper/vg-data");
    /* two mounts on one point: the later one is seen */
    assert_string_equal(cf_fssnap_mount_of(m, n, "/srv/my app/f")->fstype, "ext4");
    assert_string_equal(cf_fssnap_where(m, n, "/proc/self"), "proc proc mounted at /proc");

    /* a nested mount fails the request that contains it */
    cf_fssnap_path p = {.rel = ".", .abs = "/srv", .anchor = "/srv", .exists = 1, .is_dir = 1};
    cf_fssnap_req rq = {.root = "/srv", .p = &p, .n = 1};
    assert_int_equal(cf_fssnap_check_nested(&rq, m, n, "a snapshot of X", NULL), -1);
    assert_non_null(strstr(cf_error(), "/srv/my app"));
    assert_non_null(strstr(cf_error(), "a snapshot of X would show it empty"));
    assert_int_equal(cf_fssnap_check_nested(&rq, m, n, "a snapshot of X", "/srv/my app"), 0);
    p.abs = p.anchor = "/var/lib/app";
    assert_int_equal(cf_fssnap_check_nested(&rq, m, n, "x", NULL), 0);
    cf_fssnap_mounts_free(m, n);

    assert_int_equal(cf_fssnap_mounts_parse("21 1 254:0 / / rw\n", &m, &n), -1);
    assert_non_null(strstr(cf_error(), "line 1"));
    assert_int_equal(cf_fssnap_mounts_load(&m, &n), 0);
    assert_true(n > 0);
    assert_non_null(cf_fssnap_mount_of(m, n, "/proc/self"));
    cf_fssnap_mounts_free(m, n);
}

static void test_lvm_names(void **state)
{
    (void)state;
    char *d = cf_fssnap_dm_name("vg0", "data");
    assert_string_equal(d, "vg0-data");
    free(d);
    d = cf_fssnap_dm_name("my-vg", "coffer_a-b_x");
    assert_string_equal(d, "my--vg-coffer_a--b_x");
    free(d);
    assert_true(cf_fssnap_size_valid("1G"));
    assert_true(cf_fssnap_size_valid("512m"));
    assert_true(cf_fssnap_size_valid("1.5t"));
    assert_true(cf_fssnap_size_valid("100"));
    assert_false(cf_fssnap_size_valid(""));
    assert_false(cf_fssnap_size_valid("G"));
    assert_false(cf_fssnap_size_valid("-1G"));
    assert_false(cf_fssnap_size_valid("10%FREE"));
    assert_false(cf_fssnap_size_valid("1GB"));
    assert_false(cf_fssnap_size_valid("--help"));

    char line[] = "  vg0|plain||253|4  ";
    char *f[5];
    assert_int_equal(cf_fssnap_split_fields(line, f, 5), 5);
    assert_string_equal(f[0], "vg0");
    assert_string_equal(f[1], "plain");
    assert_string_equal(f[2], "");
    assert_string_equal(f[3], "253");
    assert_string_equal(f[4], "4");
    char two[] = "  coffer_x|data";
    assert_int_equal(cf_fssnap_split_fields(two, f, 3), 2);
    assert_string_equal(f[0], "coffer_x");
    assert_string_equal(f[1], "data");
}

static void test_exec(void **state)
{
    (void)state;
    char *out, *err;
    char *t[] = {"true", NULL};
    assert_int_equal(cf_fssnap_exec(t, NULL, 10, &out, &err), 0);
    assert_string_equal(out, "");
    free(out);
    free(err);
    char *sh[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    assert_int_equal(cf_fssnap_exec(sh, NULL, 10, &out, &err), 3);
    assert_string_equal(out, "out\n");
    assert_string_equal(err, "err\n");
    free(out);
    free(err);
    /* nothing of coffer's environment reaches the tool */
    setenv("COFFER_PASSPHRASE", "secret", 1);
    char *env[] = {"env", NULL};
    char *extra[] = {"DM_DISABLE_UDEV=1", NULL};
    assert_int_equal(cf_fssnap_exec(env, extra, 10, &out, &err), 0);
    assert_string_equal(out, "PATH=/usr/sbin:/usr/bin:/sbin:/bin\nLC_ALL=C\nDM_DISABLE_UDEV=1\n");
    free(out);
    free(err);
    unsetenv("COFFER_PASSPHRASE");
    /* no descriptor of coffer's either */
    char *fds[] = {"sh", "-c", "ls /proc/self/fd | wc -l", NULL};
    assert_int_equal(cf_fssnap_exec(fds, NULL, 10, &out, &err), 0);
    assert_int_equal(atoi(out), 4); /* 0, 1, 2 and ls's own */
    free(out);
    free(err);
    char *none[] = {"coffer-no-such-tool", NULL};
    assert_int_equal(cf_fssnap_exec(none, NULL, 10, &out, &err), -1);
    assert_non_null(strstr(cf_error(), "coffer-no-such-tool: not found"));
    char *slow[] = {"sleep", "30", NULL};
    double t0 = cf_now();
    assert_int_equal(cf_fssnap_exec(slow, NULL, 1, &out, &err), -1);
    assert_true(cf_now() - t0 < 10);
    assert_non_null(strstr(cf_error(), "`sleep 30` did not finish in 1 s"));
    free(out);
    free(err);
    char *q[] = {"lvs", "--separator", "|", "-o", "a b", "", NULL};
    char *cmd = cf_fssnap_cmdline(q);
    assert_string_equal(cmd, "`lvs --separator | -o 'a b' ''`");
    free(cmd);
}

/* What take and sweep refuse before they touch anything. */
static void test_refusals(void **state)
{
    (void)state;
    char *paths[] = {"self", NULL};
    cf_fssnap *s = (cf_fssnap *)1;
    assert_int_equal(cf_fssnap_take("zfs", "/proc", paths, 1, "t", NULL, &s), -1);
    assert_null(s);
    assert_non_null(strstr(cf_error(), "'zfs' is unknown"));
    assert_int_equal(cf_fssnap_take("btrfs", "/proc", paths, 1, "a/b", NULL, &s), -1);
    assert_non_null(strstr(cf_error(), "tag 'a/b'"));
    assert_int_equal(cf_fssnap_take("btrfs", "proc", paths, 1, "t", NULL, &s), -1);
    assert_non_null(strstr(cf_error(), "not an absolute path"));
    assert_int_equal(cf_fssnap_take("btrfs", "/proc", paths, 0, "t", NULL, &s), -1);
    char *abs[] = {"/etc"};
    assert_int_equal(cf_fssnap_take("btrfs", "/proc", abs, 1, "t", NULL, &s), -1);
    assert_non_null(strstr(cf_error(), "'/etc' is not relative"));
    assert_int_equal(cf_fssnap_take("btrfs", "/coffer-no-such-root", paths, 1, "t", NULL, &s), -1);
    assert_non_null(strstr(cf_error(), "/coffer-no-such-root"));

    /* /proc is never btrfs nor an LV; the message names the path and what it lies on */
    assert_int_equal(cf_fssnap_take("btrfs", "/proc", paths, 1, "t", NULL, &s), -1);
    assert_non_null(strstr(cf_error(), "self (/proc/self) lies on proc proc mounted at /proc"));
    assert_non_null(strstr(cf_error(), "not on btrfs"));
    assert_int_equal(cf_fssnap_sweep("btrfs", "/proc", paths, 1, "t"), -1);
    assert_non_null(strstr(cf_error(), "not on btrfs"));
    assert_int_equal(cf_fssnap_take("btrfs", "/proc", paths, 1, "t", "1G", &s), -1);
    char *missing[] = {"coffer-missing/deeper", NULL};
    assert_int_equal(cf_fssnap_take("lvm", "/proc", missing, 1, "t", NULL, &s), -1);
    assert_non_null(strstr(cf_error(), "coffer-missing/deeper (/proc/coffer-missing/deeper) lies "
                                       "on proc proc mounted at /proc"));
    assert_non_null(strstr(cf_error(), "not an LVM logical volume"));
    assert_int_equal(cf_fssnap_take("lvm", "/proc", paths, 1, "t", "1 G", &s), -1);
    assert_non_null(strstr(cf_error(), "snapshot size '1 G'"));

    assert_null(cf_fssnap_map(NULL, "x"));
    assert_int_equal(cf_fssnap_release(NULL), 0);
    assert_null(cf_fssnap_skip(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds_and_tags), cmocka_unit_test(test_names),
        cmocka_unit_test(test_mountinfo),      cmocka_unit_test(test_lvm_names),
        cmocka_unit_test(test_exec),           cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
