/*
 * The previous set of a policy, streamed in walk order: change detection
 * for a backup without holding the previous set in memory. A thread
 * reads and parses the previous manifest ahead of the walk into a small
 * queue of file entries; the walking thread advances through it with
 * cf_prevset_find, which moves forward only (the walk and the manifest
 * share one order, cf_walk_cmp). Memory stays bounded whatever the size
 * of the set. When the walk has to wait for the reader, it leaves its
 * place for the reader, which then passes over the long file lines
 * behind that place without parsing their chunk lists (a set of a tree
 * that has since moved or gone costs its decompression, not its parse).
 */
#ifndef CF_PREVSET_H
#define CF_PREVSET_H

#include "engine/manifest.h"
#include "engine/run.h"

typedef struct cf_prevset cf_prevset;

/* Start reading the newest set of run's policy (set_id NULL) or the set
 * set_id. Never fails: without a usable previous set the cursor is empty
 * and every file is read (a warning says why when the set is damaged). */
cf_prevset *cf_prevset_open(cf_run *run, const char *set_id);

/* The entry (file, directory or symbolic link) of the previous set at
 * e's place in the walk, or NULL. Entries before e are dropped. The result stays valid until a
 * call for a later entry; asked again for the same entry, the same
 * answer. Called in walk order, from one thread. */
const cf_entry *cf_prevset_find(cf_prevset *ps, const cf_entry *e);

/* Whether every chunk of the entry cf_prevset_find returned last is in
 * the repository's index (looked up by the reader thread). */
int cf_prevset_stored(const cf_prevset *ps);

/* That entry's line as the previous set holds it, when it is a file's
 * short line whose chunks are all stored (else NULL): valid as long as
 * the entry. */
const char *cf_prevset_line(const cf_prevset *ps, size_t *len);

/* Total bytes of the previous set (0 until known or without one): the
 * progress bar's estimate. Waits until the header has been read. */
uint64_t cf_prevset_bytes(cf_prevset *ps);

/* Files looked up and found so far. */
void cf_prevset_counts(const cf_prevset *ps, uint64_t *looked_up, uint64_t *found);

/* The id of the set read, or NULL. */
const char *cf_prevset_id(const cf_prevset *ps);

void cf_prevset_close(cf_prevset *ps);

#endif
