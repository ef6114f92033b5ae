/* Internals shared by the testing kit's files. */
#ifndef COFFER_TESTING_KIT_H
#define COFFER_TESTING_KIT_H

#include <stddef.h>

void *kit_alloc(size_t n); /* zeroed; aborts when out of memory */
char *kit_strdup(const char *s);

#endif
