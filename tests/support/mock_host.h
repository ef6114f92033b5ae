/*
 * A coffer_host for testing a driver without the core's engine: config
 * values come from a coffer_config built by the test, errors and log
 * lines are captured for assertions. (The real table is cf_host_table().)
 */
#ifndef COFFER_MOCK_HOST_H
#define COFFER_MOCK_HOST_H

#include "coffer/coffer.h"

typedef struct mock_host {
    coffer_host host;        /* hand &mh->host to the driver */
    char last_error[1024];   /* set by host.error */
    coffer_status last_code;
    char log[8192];          /* every log line appended, '\n'-separated */
    int cancel;              /* cancelled() returns this */
    uint64_t progress;       /* sum of progress() */
    char tmpdir[256];        /* temp_path() hands out paths in here */
    char root[512];          /* policy_root() */
} mock_host;

/* Initialise; creates a fresh temporary directory. The coffer_hctx
 * pointer passed to the driver must be mock_hctx(mh). */
void mock_host_init(mock_host *mh);
void mock_host_cleanup(mock_host *mh);
coffer_hctx *mock_hctx(mock_host *mh);

#endif
