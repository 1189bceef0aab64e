
/*
 * Copyright (C) The Tailgate authors
 *
 * Request edits a provider needs, declared per step in the policy and sent
 * with the decision as lines of text:
 *
 *     drop response_format
 *     set stream_options.include_usage true
 *
 * A path is a top-level key or "key.member"; a value is JSON that policyd
 * checked when it read the policy.  The body is rebuilt as a chain of
 * pieces, most of them the client's own bytes, with the model renamed in
 * the same pass.  Keys are matched after unescaping and ignoring letter
 * case, so that "Respons\u0065_Format" is dropped too: some providers read
 * keys that way, and a client must not keep what the policy removes.
 */


#include "ngx_http_tailgate_module.h"


#define NGX_TAILGATE_EDITS_MAX  32


typedef struct {
    ngx_str_t                    top;
    ngx_str_t                    sub;        /* empty: the key itself */
    ngx_str_t                    value;      /* JSON; empty: drop */
    ngx_uint_t                   done;       /* unsigned:1 */
} ngx_tailgate_edit_t;


typedef struct {
    ngx_http_request_t          *request;
    ngx_array_t                 *pieces;     /* ngx_str_t */
    ngx_tailgate_edit_t          edits[NGX_TAILGATE_EDITS_MAX];
    ngx_uint_t                   nedits;
} ngx_tailgate_adjust_t;


static ngx_int_t ngx_tailgate_adjust_parse(ngx_tailgate_adjust_t *a,
    ngx_str_t *spec);
static ngx_int_t ngx_tailgate_adjust_key(u_char *p, u_char *end);
static ngx_int_t ngx_tailgate_adjust_object(ngx_tailgate_adjust_t *a,
    ngx_tailgate_json_member_t *parent, ngx_str_t *model, u_char *model_at);
static ngx_int_t ngx_tailgate_adjust_new(ngx_tailgate_adjust_t *a,
    ngx_tailgate_json_member_t *parent, ngx_uint_t *first);
static ngx_tailgate_edit_t *ngx_tailgate_adjust_match(
    ngx_tailgate_adjust_t *a, ngx_tailgate_json_member_t *parent,
    ngx_tailgate_json_member_t *m, ngx_uint_t *nested);
static ngx_int_t ngx_tailgate_piece(ngx_tailgate_adjust_t *a, u_char *start,
    u_char *end);
#define ngx_tailgate_piece_text(a, text)                                      \
    ngx_tailgate_piece(a, (u_char *) text, (u_char *) text + sizeof(text) - 1)


/*
 * Rebuilds the JSON body with the provider's model (model may be NULL when
 * the name stays) and the edits of spec.  NGX_OK, or NGX_ERROR for a spec
 * that is not well formed or when memory runs out.
 */

ngx_int_t
ngx_tailgate_body_adjust(ngx_http_request_t *r, ngx_http_tailgate_ctx_t *ctx,
    ngx_str_t *model, ngx_str_t *spec)
{
    ngx_str_t              token;
    ngx_tailgate_adjust_t  a;

    a.request = r;
    a.nedits = 0;

    if (ngx_tailgate_adjust_parse(&a, spec) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tailgate: policyd sent request edits that do not "
                      "parse");
        return NGX_ERROR;
    }

    a.pieces = ngx_array_create(r->pool, 32, sizeof(ngx_str_t));
    if (a.pieces == NULL) {
        return NGX_ERROR;
    }

    if (model) {
        if (ngx_tailgate_json_quote(r->pool, model, &token) != NGX_OK) {
            return NGX_ERROR;
        }

        model = &token;
    }

    if (ngx_tailgate_adjust_object(&a, NULL, model, ctx->facts.model_start)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_tailgate_body_replace(r, ctx, a.pieces->elts, a.pieces->nelts);
}


/* "drop PATH\n" and "set PATH JSON\n" lines */

static ngx_int_t
ngx_tailgate_adjust_parse(ngx_tailgate_adjust_t *a, ngx_str_t *spec)
{
    u_char               *p, *end, *eol, *sp, *dot;
    ngx_tailgate_edit_t  *e;

    p = spec->data;
    end = p + spec->len;

    while (p < end) {
        eol = ngx_strlchr(p, end, '\n');
        if (eol == NULL) {
            return NGX_ERROR;
        }

        if (a->nedits == NGX_TAILGATE_EDITS_MAX) {
            return NGX_ERROR;
        }

        e = &a->edits[a->nedits++];
        ngx_memzero(e, sizeof(ngx_tailgate_edit_t));

        if (eol - p > 5 && ngx_strncmp(p, "drop ", 5) == 0) {
            p += 5;
            sp = eol;

        } else if (eol - p > 4 && ngx_strncmp(p, "set ", 4) == 0) {
            p += 4;
            sp = ngx_strlchr(p, eol, ' ');

            if (sp == NULL || sp + 1 == eol) {
                return NGX_ERROR;
            }

            e->value.data = sp + 1;
            e->value.len = eol - sp - 1;

        } else {
            return NGX_ERROR;
        }

        dot = ngx_strlchr(p, sp, '.');

        e->top.data = p;
        e->top.len = (dot ? dot : sp) - p;

        if (ngx_tailgate_adjust_key(e->top.data, e->top.data + e->top.len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        /* what the gateway routed on is not the policy's to change */

        if ((e->top.len == 5
             && ngx_strncasecmp(e->top.data, (u_char *) "model", 5) == 0)
            || (e->top.len == 6
                && ngx_strncasecmp(e->top.data, (u_char *) "stream", 6) == 0))
        {
            return NGX_ERROR;
        }

        if (dot) {
            e->sub.data = dot + 1;
            e->sub.len = sp - dot - 1;

            if (ngx_tailgate_adjust_key(e->sub.data, sp) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        p = eol + 1;
    }

    return NGX_OK;
}


/* what policyd allows in a path: letters, digits, "_" and "-" */

static ngx_int_t
ngx_tailgate_adjust_key(u_char *p, u_char *end)
{
    if (p == end || end - p > NGX_TAILGATE_JSON_NAME_MAX) {
        return NGX_ERROR;
    }

    for ( /* void */ ; p < end; p++) {
        if (!(ngx_tailgate_is_name_char(*p) && *p != '.')) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The body (parent NULL) or the value of one of its members, with the
 * edits for it applied.  The value of a member whose key is edited below
 * it but that is no object is replaced by a new object.
 */

static ngx_int_t
ngx_tailgate_adjust_object(ngx_tailgate_adjust_t *a,
    ngx_tailgate_json_member_t *parent, ngx_str_t *model, u_char *model_at)
{
    u_char                      *start, *end;
    ngx_uint_t                   i, first, nested;
    ngx_array_t                 *members;
    ngx_http_request_t          *r;
    ngx_tailgate_edit_t         *e;
    ngx_tailgate_json_member_t  *m;
    ngx_http_tailgate_ctx_t     *ctx;

    r = a->request;
    ctx = ngx_http_tailgate_get_ctx(r);

    if (parent) {
        start = parent->value_start;
        end = parent->value_end;

    } else {
        start = ctx->body;
        end = ctx->body + ctx->body_len;
    }

    if (*start != '{' && parent) {
        members = NULL;

    } else if (ngx_tailgate_json_members(r->pool, start, end, &members)
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_tailgate_piece_text(a, "{") != NGX_OK) {
        return NGX_ERROR;
    }

    first = 1;
    m = members ? members->elts : NULL;

    for (i = 0; members && i < members->nelts; i++) {

        e = ngx_tailgate_adjust_match(a, parent, &m[i], &nested);

        /* every key the edits name is written at most once, by them */

        if (e && (e->done || e->value.len == 0)) {
            continue;
        }

        if (!first && ngx_tailgate_piece_text(a, ",") != NGX_OK) {
            return NGX_ERROR;
        }

        first = 0;

        if (e == NULL && !nested) {

            if (model && m[i].value_start == model_at) {
                if (ngx_tailgate_piece(a, m[i].key_start, m[i].value_start)
                    != NGX_OK
                    || ngx_tailgate_piece(a, model->data,
                                          model->data + model->len)
                       != NGX_OK)
                {
                    return NGX_ERROR;
                }

                continue;
            }

            if (ngx_tailgate_piece(a, m[i].key_start, m[i].value_end)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        /* the client's key, then a new value */

        if (ngx_tailgate_piece(a, m[i].key_start, m[i].value_start)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (nested) {
            if (ngx_tailgate_adjust_object(a, &m[i], NULL, NULL) != NGX_OK) {
                return NGX_ERROR;
            }

            /* done with this key: its other spellings go */

            for (e = a->edits; e < a->edits + a->nedits; e++) {
                if (e->sub.len && e->top.len == (size_t) m[i].name_len
                    && ngx_strncasecmp(e->top.data, m[i].name, e->top.len)
                       == 0)
                {
                    e->done = 1;
                }
            }

            continue;
        }

        e->done = 1;

        if (ngx_tailgate_piece(a, e->value.data, e->value.data + e->value.len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_tailgate_adjust_new(a, parent, &first) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_tailgate_piece_text(a, "}");
}


/*
 * The edit for member m (of the body, or of parent), or NULL.  *nested is
 * set when m is a top-level key that edits reach below.
 */

static ngx_tailgate_edit_t *
ngx_tailgate_adjust_match(ngx_tailgate_adjust_t *a,
    ngx_tailgate_json_member_t *parent, ngx_tailgate_json_member_t *m,
    ngx_uint_t *nested)
{
    ngx_str_t            *key;
    ngx_tailgate_edit_t  *e;

    *nested = 0;

    if (m->name_len < 0) {
        return NULL;
    }

    for (e = a->edits; e < a->edits + a->nedits; e++) {

        if (parent) {
            /* a member of parent: edits of parent's key, one level down */

            if (e->sub.len == 0 || e->top.len != (size_t) parent->name_len
                || ngx_strncasecmp(e->top.data, parent->name, e->top.len)
                   != 0)
            {
                continue;
            }

            key = &e->sub;

        } else {
            key = &e->top;
        }

        if (key->len != (size_t) m->name_len
            || ngx_strncasecmp(key->data, m->name, key->len) != 0)
        {
            continue;
        }

        if (!parent && e->sub.len) {
            /* the first member of that name gets them, the rest go */
            *nested = !e->done;
            return *nested ? NULL : e;
        }

        return e;
    }

    return NULL;
}


/* members the edits set that the object did not have */

static ngx_int_t
ngx_tailgate_adjust_new(ngx_tailgate_adjust_t *a,
    ngx_tailgate_json_member_t *parent, ngx_uint_t *first)
{
    u_char               *p, *last;
    ngx_uint_t            i, j, opened;
    ngx_tailgate_edit_t  *e, *o;

    for (i = 0; i < a->nedits; i++) {
        e = &a->edits[i];

        if (e->done || e->value.len == 0) {
            continue;
        }

        if (parent) {
            if (e->sub.len == 0 || e->top.len != (size_t) parent->name_len
                || ngx_strncasecmp(e->top.data, parent->name, e->top.len)
                   != 0)
            {
                continue;
            }
        }

        if (parent || e->sub.len == 0) {

            /* ,"key":value */

            p = ngx_pnalloc(a->request->pool, e->top.len + e->sub.len + 8);
            if (p == NULL) {
                return NGX_ERROR;
            }

            last = ngx_sprintf(p, "%s\"%V\":", *first ? "" : ",",
                               parent ? &e->sub : &e->top);

            if (ngx_tailgate_piece(a, p, last) != NGX_OK
                || ngx_tailgate_piece(a, e->value.data,
                                      e->value.data + e->value.len)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            e->done = 1;
            *first = 0;
            continue;
        }

        /* ,"key":{"member":value,...}: every member set below this key */

        opened = 0;

        for (j = i; j < a->nedits; j++) {
            o = &a->edits[j];

            if (o->done || o->value.len == 0 || o->top.len != e->top.len
                || ngx_strncmp(o->top.data, e->top.data, e->top.len) != 0)
            {
                continue;
            }

            p = ngx_pnalloc(a->request->pool, o->top.len + o->sub.len + 16);
            if (p == NULL) {
                return NGX_ERROR;
            }

            if (opened) {
                last = ngx_sprintf(p, ",\"%V\":", &o->sub);

            } else {
                last = ngx_sprintf(p, "%s\"%V\":{\"%V\":",
                                   *first ? "" : ",", &o->top, &o->sub);
            }

            if (ngx_tailgate_piece(a, p, last) != NGX_OK
                || ngx_tailgate_piece(a, o->value.data,
                                      o->value.data + o->value.len)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            o->done = 1;
            opened = 1;
        }

        if (opened) {
            if (ngx_tailgate_piece_text(a, "}") != NGX_OK) {
                return NGX_ERROR;
            }

            *first = 0;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_tailgate_piece(ngx_tailgate_adjust_t *a, u_char *start, u_char *end)
{
    ngx_str_t  *s;

    if (start == end) {
        return NGX_OK;
    }

    s = ngx_array_push(a->pieces);
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->data = start;
    s->len = end - start;

    return NGX_OK;
}
