/*
 * A provider's model list read into the names a pattern route lists
 * (model_list.h).  Providers' lists are large (OpenRouter's has hundreds
 * of models) and not always clean: an entry without a usable id is left
 * out, not the list.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "model_list.h"


typedef struct {
    const char  *id;
    size_t       len;
    size_t       order;
} tg_model_id;


static int
tg_model_id_cmp(const void *a, const void *b)
{
    int                 rc;
    size_t              n;
    const tg_model_id  *x = a, *y = b;

    n = x->len < y->len ? x->len : y->len;
    rc = memcmp(x->id, y->id, n);

    if (rc != 0) {
        return rc;
    }

    if (x->len != y->len) {
        return x->len < y->len ? -1 : 1;
    }

    /* the first of equal ids first: it is the one kept */
    return x->order < y->order ? -1 : x->order > y->order;
}


static int
tg_model_order_cmp(const void *a, const void *b)
{
    const tg_model_id  *x = a, *y = b;

    return x->order < y->order ? -1 : x->order > y->order;
}


static bool
tg_model_id_ok(const char *id, size_t len, size_t max_len)
{
    size_t  i;

    if (len == 0 || len > max_len) {
        return false;
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) id[i] < 0x20 || id[i] == 0x7f || id[i] == '*') {
            return false;
        }
    }

    return true;
}


int
tg_model_list_read(const char *text, size_t len, size_t max_len,
    tg_model_keep_pt keep, void *data, const char ***names, size_t *n,
    char *why, size_t whylen)
{
    int            rc;
    char          *p, **out;
    size_t         i, j, kept, count, bytes, id_len;
    cJSON         *doc, *list, *item, *id;
    tg_model_id   *ids;

    *names = NULL;
    *n = 0;
    ids = NULL;
    rc = -1;

    doc = cJSON_ParseWithLength(text, len);
    if (doc == NULL) {
        snprintf(why, whylen, "not JSON");
        return -1;
    }

    list = cJSON_IsObject(doc) ? cJSON_GetObjectItemCaseSensitive(doc, "data")
                               : NULL;

    if (!cJSON_IsArray(list)) {
        snprintf(why, whylen, "expected an object with a \"data\" array");
        goto done;
    }

    count = (size_t) cJSON_GetArraySize(list);
    if (count > TG_MODEL_LIST_MAX) {
        count = TG_MODEL_LIST_MAX;
    }

    ids = calloc(count ? count : 1, sizeof(tg_model_id));
    if (ids == NULL) {
        snprintf(why, whylen, "out of memory");
        goto done;
    }

    /* the usable ids the route keeps */

    j = 0;
    i = 0;

    for (item = list->child; item != NULL && i < count;
         item = item->next, i++)
    {
        id = cJSON_IsObject(item)
             ? cJSON_GetObjectItemCaseSensitive(item, "id") : NULL;

        if (!cJSON_IsString(id)) {
            continue;
        }

        /* cJSON's strings end at a NUL: one inside is a shorter id */
        id_len = strlen(id->valuestring);

        if (!tg_model_id_ok(id->valuestring, id_len, max_len)
            || !keep(id->valuestring, id_len, data))
        {
            continue;
        }

        ids[j].id = id->valuestring;
        ids[j].len = id_len;
        ids[j].order = j;
        j++;
    }

    count = j;

    /* each once: sorted, the later of equal ids marked, the order back */

    qsort(ids, count, sizeof(tg_model_id), tg_model_id_cmp);

    for (i = 1, kept = 0; i < count; i++) {
        if (ids[i].len == ids[kept].len
            && memcmp(ids[i].id, ids[kept].id, ids[i].len) == 0)
        {
            ids[i].len = SIZE_MAX;      /* a repeat */

        } else {
            kept = i;
        }
    }

    qsort(ids, count, sizeof(tg_model_id), tg_model_order_cmp);

    bytes = 0;
    j = 0;

    for (i = 0; i < count; i++) {
        if (ids[i].len != SIZE_MAX) {
            bytes += ids[i].len + 1;
            j++;
        }
    }

    out = malloc(j * sizeof(char *) + bytes + 1);
    if (out == NULL) {
        snprintf(why, whylen, "out of memory");
        goto done;
    }

    p = (char *) (out + j);
    j = 0;

    for (i = 0; i < count; i++) {
        if (ids[i].len == SIZE_MAX) {
            continue;
        }

        out[j++] = p;
        memcpy(p, ids[i].id, ids[i].len);
        p += ids[i].len;
        *p++ = '\0';
    }

    *names = (const char **) out;
    *n = j;
    rc = 0;

done:

    free(ids);
    cJSON_Delete(doc);

    return rc;
}
