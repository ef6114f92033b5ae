/* Option parsing and output helpers shared by the commands. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/run.h"
#include "util/util.h"

int no_progress;

int die(int code)
{
    fprintf(stderr, "coffer: error: %s\n", cf_error());
    return code;
}

int usage_error(const char *cmd, const char *msg)
{
    fprintf(stderr, "coffer: error: %s%s%s\n(see `coffer %s --help`)\n", cmd ? cmd : "",
            cmd ? ": " : "", msg, cmd ? cmd : "");
    return CF_EXIT_USAGE;
}

void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) {
        puts(s);
        free(s);
    }
}

int parse(int argc, char **argv, const char *help, args *a)
{
    static struct option opts[] = {COMMON_OPTS,
                                   {"set", required_argument, 0, 's'},
                                   {"to", required_argument, 0, 'o'},
                                   {"in-place", no_argument, 0, 'i'},
                                   {"only", required_argument, 0, 'O'},
                                   {"map", required_argument, 0, 'm'},
                                   {"force", no_argument, 0, 'f'},
                                   {"read-data", no_argument, 0, 'r'},
                                   {"no-validate", no_argument, 0, 'V'},
                                   {"describe", required_argument, 0, 'd'},
                                   {"from", required_argument, 0, 'F'},
                                   {"dry-run", no_argument, 0, 'n'},
                                   {"rollback-objects", no_argument, 0, 'R'},
                                   {"all", no_argument, 0, 'A'},
                                   {"keep-last", required_argument, 0, 1000},
                                   {"keep-hourly", required_argument, 0, 1001},
                                   {"keep-daily", required_argument, 0, 1002},
                                   {"keep-weekly", required_argument, 0, 1003},
                                   {"keep-monthly", required_argument, 0, 1004},
                                   {"keep-yearly", required_argument, 0, 1005},
                                   {"keep-within", required_argument, 0, 1006},
                                   {"encryption", required_argument, 0, 1007},
                                   {"read-data-subset", required_argument, 0, 1008},
                                   {"max-unused", required_argument, 0, 1009},
                                   {"new-passphrase-file", required_argument, 0, 1010},
                                   {"rebuild-index", no_argument, 0, 1011},
                                   {0, 0, 0, 0}};
    for (int k = 0; k < 6; k++)
        a->keep[k] = -1;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "hp:t:jvq", opts, NULL)) != -1) {
        switch (c) {
        case 'h': fputs(help, stdout); exit(0);
        case 'p': a->policy = optarg; break;
        case 't': a->target = optarg; break;
        case 'j': a->json = 1; break;
        case 'v': cf_log_set_level(CF_LOG_DEBUG); break;
        case 'q': cf_log_set_level(CF_LOG_ERROR); break;
        case 'P': no_progress = 1; break;
        case 's': a->set = optarg; break;
        case 'o': a->to = optarg; break;
        case 'i': a->in_place = 1; break;
        case 'O': a->only = optarg; break;
        case 'm':
            a->maps = cf_realloc(a->maps, (a->nmaps + 1) * sizeof(char *));
            a->maps[a->nmaps++] = optarg;
            break;
        case 'f': a->force = 1; break;
        case 'r': a->read_data = 1; break;
        case 'V': a->no_validate = 1; break;
        case 'd': a->describe = optarg; break;
        case 'F': a->from = optarg; break;
        case 'n': a->dry_run = 1; break;
        case 'R': a->rollback_objects = 1; break;
        case 'A': a->all = 1; break;
        case 1006: a->keep_within = optarg; break;
        case 1007: a->encryption = optarg; break;
        case 1008: a->read_data_subset = optarg; break;
        case 1009: a->max_unused = optarg; break;
        case 1010: a->new_passphrase_file = optarg; break;
        case 1011: a->rebuild_index = 1; break;
        default:
            if (c >= 1000 && c <= 1005) {
                char *end;
                long v = strtol(optarg, &end, 10);
                if (*end || v < 0) {
                    static const char *names[] = {"last", "hourly", "daily",
                                                  "weekly", "monthly", "yearly"};
                    fprintf(stderr, "coffer: error: --keep-%s needs a count, not '%s'\n",
                            names[c - 1000], optarg);
                    return -1;
                }
                a->keep[c - 1000] = (int)v;
                break;
            }
            return -1;
        }
    }
    return 0;
}

int need_policy(const char *cmd, const args *a)
{
    if (!a->policy)
        return usage_error(cmd, "-p POLICY is required");
    return 0;
}


int cli_open(int argc, char **argv, const char *help, const char *cmd, int open_repo, int lock,
             args *a, cf_run **run)
{
    *run = NULL;
    if (parse(argc, argv, help, a) != 0)
        return CF_EXIT_USAGE;
    return cli_open_parsed(cmd, open_repo, lock, a, run);
}

int cli_open_parsed(const char *cmd, int open_repo, int lock, args *a, cf_run **run)
{
    *run = NULL;
    if (need_policy(cmd, a))
        return CF_EXIT_USAGE;
    int orc = cf_run_open(a->policy, a->target, open_repo, run);
    if (orc != 0) {
        *run = NULL;
        return die(orc == -2 ? CF_EXIT_USAGE : CF_EXIT_FAILED);
    }
    (*run)->no_progress = no_progress;
    if (lock != CLI_LOCK_NONE && cf_run_lock(*run, lock == CLI_LOCK_EXCLUSIVE, cmd) != 0) {
        cf_run_close(*run);
        *run = NULL;
        return die(CF_EXIT_FAILED);
    }
    return 0;
}
