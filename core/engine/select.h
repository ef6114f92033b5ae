/*
 * Choosing part of a set: include and exclude patterns over the paths of
 * files components, written COMPONENT/path as the set records the path.
 * A pattern is an fnmatch(3) glob with FNM_PATHNAME (a '*' never crosses
 * a '/'); a pattern that names a directory, literally or by a glob,
 * takes everything beneath it. An entry is chosen when an include
 * pattern takes it and no exclude pattern does.
 */
#ifndef CF_SELECT_H
#define CF_SELECT_H

#include <stddef.h>

typedef struct cf_select cf_select;

/* files: the names of the set's files components; with exactly one, a
 * pattern whose first part names none of them is read as beneath that
 * one. NULL with cf_error for a pattern that is empty, absolute, holds a
 * ".." part or names no files component. */
cf_select *cf_select_new(const char *const *files, size_t nfiles);
int cf_select_include(cf_select *s, const char *pattern);
int cf_select_exclude(cf_select *s, const char *pattern);
/* --include-from FILE: literal paths one per line; '#' comments and blank
 * lines ignored. 0 or -1 with cf_error. */
int cf_select_include_from(cf_select *s, const char *file);
size_t cf_select_count(const cf_select *s); /* include patterns */

/* 1 when component/path is chosen (counting the include pattern that took
 * it), 0 when not. */
int cf_select_match(cf_select *s, const char *component, const char *path);
/* 1 when component/path is a directory above a chosen entry's path: the
 * caller tells it through cf_select_note_chosen first. */
void cf_select_note_chosen(cf_select *s, const char *component, const char *path);
int cf_select_is_parent(const cf_select *s, const char *component, const char *path);
/* The first include pattern that took nothing, or NULL. */
const char *cf_select_unmatched(const cf_select *s);
/* Whether the selection names component (some include pattern starts in it). */
int cf_select_names_component(const cf_select *s, const char *component);
void cf_select_free(cf_select *s);

/* Pattern test alone: fnmatch FNM_PATHNAME on full, or on any leading
 * part of full ending before a '/'. */
int cf_select_pattern_takes(const char *pattern, const char *full);

#endif
