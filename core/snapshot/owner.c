/*
 * Who owns a snapshot: the name of every snapshot carries the process
 * that took it, so that a later run can tell a dead run's leftover (to
 * remove) from the snapshot of a backup still running (to leave alone).
 * A pid alone is not enough (pids are reused, and reset at boot): the
 * boot id, the pid namespace and the process's start time come with it.
 */
#include "snapshot/snapshot_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

/* Start time (clock ticks after boot, field 22 of /proc/PID/stat); 0 if
 * the process does not exist. */
static unsigned long long start_time(const char *pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* the command name (field 2) may hold spaces and parentheses */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    for (int field = 3; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

void cf_fssnap_owner_self(cf_fssnap_owner *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->boot, sizeof o->boot, "00000000");
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (f) {
        char b[64] = "";
        if (fgets(b, sizeof b, f) && strlen(b) >= 8) {
            int ok = 1;
            for (int i = 0; i < 8; i++)
                ok &= (b[i] >= '0' && b[i] <= '9') || (b[i] >= 'a' && b[i] <= 'f');
            if (ok)
                memcpy(o->boot, b, 8);
        }
        fclose(f);
    }
    struct stat st;
    if (stat("/proc/self/ns/pid", &st) == 0)
        o->pidns = (unsigned long long)st.st_ino;
    o->pid = (unsigned long long)getpid();
    o->start = start_time("self");
}

cf_fssnap_owner_state cf_fssnap_owner_check(const cf_fssnap_owner *o)
{
    cf_fssnap_owner me;
    cf_fssnap_owner_self(&me);
    if (strcmp(me.boot, o->boot) != 0)
        return CF_OWNER_GONE;
    if (me.pidns != o->pidns)
        return CF_OWNER_UNKNOWN;
    char pid[32];
    snprintf(pid, sizeof pid, "%llu", o->pid);
    unsigned long long st = start_time(pid);
    return st != 0 && st == o->start ? CF_OWNER_ALIVE : CF_OWNER_GONE;
}

char *cf_fssnap_name_new(const char *tag)
{
    static atomic_uint seq;
    cf_fssnap_owner o;
    cf_fssnap_owner_self(&o);
    return cf_asprintf("coffer_%s_%s.%llx.%llx.%llx.%u", tag, o.boot, o.pidns, o.pid, o.start,
                       atomic_fetch_add(&seq, 1));
}

/* Digits of one field ending at '.' or the end; 0 if none, or too many. */
static size_t field(const char *s, int hex, unsigned long long *v)
{
    size_t n = 0;
    unsigned long long x = 0;
    for (; s[n] && s[n] != '.'; n++) {
        char c = s[n];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (hex && c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return 0;
        if (n >= 16)
            return 0;
        x = x * (hex ? 16 : 10) + (unsigned)d;
    }
    *v = x;
    return n;
}

int cf_fssnap_name_parse(const char *name, const char *tag, cf_fssnap_owner *o)
{
    size_t tl = strlen(tag);
    if (strncmp(name, "coffer_", 7) != 0 || strncmp(name + 7, tag, tl) != 0 || name[7 + tl] != '_')
        return 0;
    const char *p = name + 8 + tl;
    cf_fssnap_owner r;
    memset(&r, 0, sizeof r);
    unsigned long long v[5];
    for (int i = 0; i < 5; i++) {
        size_t n = field(p, i < 4, &v[i]);
        if (n == 0 || (i == 0 && n != 8) || (i < 4 && p[n] != '.') || (i == 4 && p[n] != 0))
            return 0;
        if (i == 0)
            memcpy(r.boot, p, 8);
        p += n + (i < 4);
    }
    r.pidns = v[1];
    r.pid = v[2];
    r.start = v[3];
    if (o)
        *o = r;
    return 1;
}
