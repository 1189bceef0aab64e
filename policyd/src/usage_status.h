/* The usage part of the status (usage_status.c), for status.c. */

#ifndef TG_USAGE_STATUS_H
#define TG_USAGE_STATUS_H

#include <cjson/cJSON.h>

#include "status.h"


void tg_usage_status_json(cJSON *root, const tg_status_view *v);

/* A malloc()ed text and its length in *len, or NULL. */
char *tg_usage_status_prometheus(const tg_status_view *v, size_t *len);


#endif /* TG_USAGE_STATUS_H */
