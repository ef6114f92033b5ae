/*
 * Progress: a bar (bytes, files, rate, ETA) redrawn on a terminal, plain
 * periodic log lines otherwise. Counters are atomic; any thread may add.
 */
#ifndef CF_PROGRESS_H
#define CF_PROGRESS_H

#include <stdint.h>

/* mode: 0 auto (bar if stderr is a terminal), 1 never. total_bytes 0 = unknown. */
void cf_progress_start(const char *what, uint64_t total_bytes, int mode);
void cf_progress_add(uint64_t bytes, uint64_t files);
void cf_progress_stop(void);
void cf_progress_set_total(uint64_t total_bytes);
uint64_t cf_progress_bytes(void);
uint64_t cf_progress_files(void);
/* "1.2 GiB" into buf */
const char *cf_human_bytes(uint64_t n, char *buf, int len);

#endif
