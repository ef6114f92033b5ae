/*
 * Checks of what a set names before anything acts on it.
 *
 * A repository is untrusted input: a manifest written by hand can name
 * component paths or entries with "..", component names with slashes,
 * streams named like paths, or a set id that is not its own. Restore,
 * verify and check refuse such a set instead of using it, naming the set
 * and the field.
 */
#ifndef CF_SETCHECK_H
#define CF_SETCHECK_H

#include <jansson.h>

#include "engine/manifest.h"

/* 1 if s is a set id: YYYYMMDDTHHMMSSZ-xxxxxxxx (or a longer hex tail). */
int cf_set_id_valid(const char *s);

/* 1 if s may name a database dump stream: a plain relative name (as an
 * entry path: no leading '/', no empty, "." or ".." segment), at most
 * 1024 bytes. */
int cf_stream_name_valid(const char *s);

/* 0 if the header of set_id is well formed: its id (when present), component names
 * (unique), types, files paths ("." or plain relative paths), drivers and
 * counts. -1 with cf_error naming the set and the field otherwise. */
int cf_set_header_check(const char *set_id, json_t *h);

/* 0 if an entry may be acted on: its path (a plain relative path for
 * files, links and objects; a single segment for streams), a hard link's
 * target, nanoseconds in range. -1 with cf_error naming the entry. The
 * readers use this; restore also refuses duplicates while writing. */
int cf_entry_check(const cf_entry *e);

#endif
