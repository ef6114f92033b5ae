/*
 * Commands on a bare repository: `coffer --repo LOCATION sets | restore |
 * policy show`, working from the policy each set records (engine/recover.h).
 */
#ifndef CF_CMD_RECOVER_H
#define CF_CMD_RECOVER_H

/* The location given with the global option --repo, or NULL. */
extern const char *cli_repo;

/* 0 when cmd works with --repo; else CF_EXIT_USAGE, reported. */
int cli_repo_allowed(const char *cmd, int argc, char **argv);

int cmd_sets_repo(int argc, char **argv);
int cmd_restore_repo(int argc, char **argv);
/* coffer policy show --set ID (with --repo, or -p POLICY). */
int cmd_policy_show(int argc, char **argv);

#endif
