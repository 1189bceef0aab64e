
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
 * checked when it read the policy.  The body is rebuilt, with the model
 * renamed in the same pass, as a chain of pieces: runs of the client's own
 * bytes between the members edited, and the few bytes the edits write.  So
 * the pieces grow with the edits, not with the members of the body.
 *
 * Keys are matched after unescaping and ignoring letter case, so that
 * "Respons\u0065_Format" is dropped too: some providers read keys that
 * way, and a client must not keep what the policy removes.  A key that is
 * set is written as the policy spells it, once; its other spellings go.
 */


#include "ngx_tailgate_common.h"
#include "ngx_tailgate_names.h"


#define NGX_TAILGATE_EDITS_MAX  32


typedef struct {
    ngx_str_t                    top;
    ngx_str_t                    sub;        /* empty: the key itself */
    ngx_str_t                    value;      /* JSON; empty: drop */
    ngx_uint_t                   done;       /* unsigned:1 */
} ngx_tailgate_edit_t;


typedef enum {
    NGX_TAILGATE_KEEP = 0,
    NGX_TAILGATE_DROP,
    NGX_TAILGATE_SET,
    NGX_TAILGATE_NESTED,
    NGX_TAILGATE_MODEL
} ngx_tailgate_action_e;


typedef struct {
    ngx_http_request_t          *request;
    ngx_array_t                 *pieces;     /* ngx_str_t */
    ngx_str_t                   *model;      /* quoted, or NULL */
    u_char                      *model_at;
    ngx_tailgate_edit_t          edits[NGX_TAILGATE_EDITS_MAX];
    ngx_uint_t                   nedits;
} ngx_tailgate_adjust_t;


static ngx_int_t ngx_tailgate_adjust_parse(ngx_tailgate_adjust_t *a,
    ngx_str_t *spec);
static ngx_int_t ngx_tailgate_adjust_key(u_char *p, u_char *end);
static ngx_int_t ngx_tailgate_adjust_object(ngx_tailgate_adjust_t *a,
    ngx_str_t *parent, u_char *start, u_char *end);
static ngx_tailgate_action_e ngx_tailgate_adjust_action(
    ngx_tailgate_adjust_t *a, ngx_str_t *parent,
    ngx_tailgate_json_member_t *m, ngx_tailgate_edit_t **edit);
static ngx_uint_t ngx_tailgate_adjust_group_sets(ngx_tailgate_adjust_t *a,
    ngx_str_t *top);
static void ngx_tailgate_adjust_group_done(ngx_tailgate_adjust_t *a,
    ngx_str_t *top);
static ngx_int_t ngx_tailgate_adjust_new(ngx_tailgate_adjust_t *a,
    ngx_str_t *parent, ngx_uint_t *first);
static ngx_int_t ngx_tailgate_adjust_key_piece(ngx_tailgate_adjust_t *a,
    ngx_str_t *key, ngx_uint_t comma);
static ngx_int_t ngx_tailgate_piece(ngx_tailgate_adjust_t *a, u_char *start,
    u_char *end);
#define ngx_tailgate_piece_text(a, text)                                      \
    ngx_tailgate_piece(a, (u_char *) text, (u_char *) text + sizeof(text) - 1)


/* what the gateway routed on is not the policy's to change */
static ngx_str_t  ngx_tailgate_model = ngx_string("model");
static ngx_str_t  ngx_tailgate_stream = ngx_string("stream");


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
    a.model = NULL;
    a.model_at = ctx->facts.model_start;

    if (ngx_tailgate_adjust_parse(&a, spec) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "tailgate: policyd sent request edits that do not "
                      "parse");
        return NGX_ERROR;
    }

    a.pieces = ngx_array_create(r->pool, 8 + 6 * a.nedits, sizeof(ngx_str_t));
    if (a.pieces == NULL) {
        return NGX_ERROR;
    }

    if (model) {
        if (ngx_tailgate_json_quote(r->pool, model, &token) != NGX_OK) {
            return NGX_ERROR;
        }

        a.model = &token;
    }

    if (ngx_tailgate_adjust_object(&a, NULL, ctx->body,
                                   ctx->body + ctx->body_len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_tailgate_body_replace(r, ctx, a.pieces->elts, a.pieces->nelts);
}


/*
 * Whether the edits of spec can change this body: any "set" does; a
 * "drop" only of a key the body may have (its bit in facts->keys).  So a
 * provider's scrub of fields the client did not send costs no pass over
 * the body.
 */

ngx_uint_t
ngx_tailgate_body_adjust_needed(ngx_http_tailgate_ctx_t *ctx,
    ngx_str_t *spec)
{
    u_char  *p, *end, *eol, *top_end;

    if (ctx->facts.keys_unknown) {
        return 1;
    }

    p = spec->data;
    end = p + spec->len;

    while (p < end) {
        eol = ngx_strlchr(p, end, '\n');
        if (eol == NULL) {
            return 1;
        }

        if (eol - p <= 5 || ngx_strncmp(p, "drop ", 5) != 0) {
            return 1;
        }

        p += 5;
        top_end = ngx_strlchr(p, eol, '.');
        if (top_end == NULL) {
            top_end = eol;
        }

        if (ctx->facts.keys & ngx_tailgate_json_key_bit(p, top_end - p)) {
            return 1;
        }

        p = eol + 1;
    }

    return 0;
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

        if (ngx_tailgate_key_is(e->top.data, e->top.len, &ngx_tailgate_model)
            || ngx_tailgate_key_is(e->top.data, e->top.len,
                                   &ngx_tailgate_stream))
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
 * The object between start and end, edited: the body itself (parent NULL)
 * or the value of its key parent.  A run of members kept as they are is
 * one piece of the client's bytes, commas and spaces included.
 */

static ngx_int_t
ngx_tailgate_adjust_object(ngx_tailgate_adjust_t *a, ngx_str_t *parent,
    u_char *start, u_char *end)
{
    u_char                      *run_start, *run_end;
    ngx_int_t                    rc;
    ngx_uint_t                   first;
    ngx_tailgate_edit_t         *e;
    ngx_tailgate_action_e        action;
    ngx_tailgate_json_iter_t     it;
    ngx_tailgate_json_member_t   m;

    rc = ngx_tailgate_json_members(&it, start, end);

    if (rc == NGX_ERROR || (rc == NGX_DECLINED && parent == NULL)) {
        return NGX_ERROR;
    }

    if (ngx_tailgate_piece_text(a, "{") != NGX_OK) {
        return NGX_ERROR;
    }

    first = 1;
    run_start = NULL;
    run_end = NULL;

    /* not an object: a new one, of what the edits set below the key */

    while (rc == NGX_OK) {

        rc = ngx_tailgate_json_member(&it, &m);

        if (rc == NGX_DONE) {
            break;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        action = ngx_tailgate_adjust_action(a, parent, &m, &e);

        if (action == NGX_TAILGATE_KEEP) {

            /* the previous member was kept too: one run with it */

            if (run_start) {
                run_end = m.value_end;
                continue;
            }

            if (!first && ngx_tailgate_piece_text(a, ",") != NGX_OK) {
                return NGX_ERROR;
            }

            run_start = m.key_start;
            run_end = m.value_end;
            first = 0;
            continue;
        }

        if (run_start) {
            if (ngx_tailgate_piece(a, run_start, run_end) != NGX_OK) {
                return NGX_ERROR;
            }

            run_start = NULL;
        }

        switch (action) {

        case NGX_TAILGATE_DROP:
            continue;

        case NGX_TAILGATE_MODEL:
            if ((!first && ngx_tailgate_piece_text(a, ",") != NGX_OK)
                || ngx_tailgate_piece(a, m.key_start, m.value_start)
                   != NGX_OK
                || ngx_tailgate_piece(a, a->model->data,
                                      a->model->data + a->model->len)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }
            break;

        case NGX_TAILGATE_SET:
            e->done = 1;

            if (ngx_tailgate_adjust_key_piece(a, parent ? &e->sub : &e->top,
                                              !first)
                != NGX_OK
                || ngx_tailgate_piece(a, e->value.data,
                                      e->value.data + e->value.len)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }
            break;

        default: /* NGX_TAILGATE_NESTED */
            if (ngx_tailgate_adjust_key_piece(a, &e->top, !first) != NGX_OK
                || ngx_tailgate_adjust_object(a, &e->top, m.value_start,
                                              m.value_end)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            /* done with this key: its other spellings go */
            ngx_tailgate_adjust_group_done(a, &e->top);
            break;
        }

        first = 0;
    }

    if (run_start && ngx_tailgate_piece(a, run_start, run_end) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_tailgate_adjust_new(a, parent, &first) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_tailgate_piece_text(a, "}");
}


/* what becomes of member m of the body (parent NULL) or of key parent */

static ngx_tailgate_action_e
ngx_tailgate_adjust_action(ngx_tailgate_adjust_t *a, ngx_str_t *parent,
    ngx_tailgate_json_member_t *m, ngx_tailgate_edit_t **edit)
{
    size_t                len;
    ngx_tailgate_edit_t  *e;

    *edit = NULL;

    if (parent == NULL && a->model && m->value_start == a->model_at) {
        return NGX_TAILGATE_MODEL;
    }

    /* a key too long to decode is no key the policy names */

    if (m->name_len < 0) {
        return NGX_TAILGATE_KEEP;
    }

    len = m->name_len;

    for (e = a->edits; e < a->edits + a->nedits; e++) {

        if (parent) {
            if (e->sub.len == 0
                || !ngx_tailgate_key_is(parent->data, parent->len, &e->top)
                || !ngx_tailgate_key_is(m->name, len, &e->sub))
            {
                continue;
            }

        } else if (!ngx_tailgate_key_is(m->name, len, &e->top)) {
            continue;
        }

        *edit = e;

        if (e->done || e->value.len == 0) {
            /* dropped, or a spelling after the one that was written */

            if (parent == NULL && e->sub.len && !e->done) {
                break;
            }

            return NGX_TAILGATE_DROP;
        }

        if (parent || e->sub.len == 0) {
            return NGX_TAILGATE_SET;
        }

        break;
    }

    if (*edit == NULL) {
        return NGX_TAILGATE_KEEP;
    }

    /*
     * Edits reach below this key: its object is rebuilt.  A value that is
     * no object becomes one only for members to set; drops leave it alone.
     */

    if (*m->value_start != '{'
        && !ngx_tailgate_adjust_group_sets(a, &(*edit)->top))
    {
        ngx_tailgate_adjust_group_done(a, &(*edit)->top);
        return NGX_TAILGATE_KEEP;
    }

    return NGX_TAILGATE_NESTED;
}


/* how many members the edits set below key top */

static ngx_uint_t
ngx_tailgate_adjust_group_sets(ngx_tailgate_adjust_t *a, ngx_str_t *top)
{
    ngx_uint_t            n;
    ngx_tailgate_edit_t  *e;

    n = 0;

    for (e = a->edits; e < a->edits + a->nedits; e++) {
        if (e->sub.len && e->value.len
            && ngx_tailgate_key_is(top->data, top->len, &e->top))
        {
            n++;
        }
    }

    return n;
}


static void
ngx_tailgate_adjust_group_done(ngx_tailgate_adjust_t *a, ngx_str_t *top)
{
    ngx_tailgate_edit_t  *e;

    for (e = a->edits; e < a->edits + a->nedits; e++) {
        if (e->sub.len && ngx_tailgate_key_is(top->data, top->len, &e->top))
        {
            e->done = 1;
        }
    }
}


/* members the edits set that the object did not have */

static ngx_int_t
ngx_tailgate_adjust_new(ngx_tailgate_adjust_t *a, ngx_str_t *parent,
    ngx_uint_t *first)
{
    ngx_uint_t            i, j, opened;
    ngx_tailgate_edit_t  *e, *o;

    for (i = 0; i < a->nedits; i++) {
        e = &a->edits[i];

        if (e->done || e->value.len == 0) {
            continue;
        }

        if (parent) {
            if (e->sub.len == 0
                || !ngx_tailgate_key_is(parent->data, parent->len, &e->top))
            {
                continue;
            }

        } else if (e->sub.len == 0) {
            /* ,"key":value */

            if (ngx_tailgate_adjust_key_piece(a, &e->top, !*first) != NGX_OK
                || ngx_tailgate_piece(a, e->value.data,
                                      e->value.data + e->value.len)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            e->done = 1;
            *first = 0;
            continue;

        } else {
            /* ,"key":{"member":value,...}: every member set below it */

            if (ngx_tailgate_adjust_key_piece(a, &e->top, !*first) != NGX_OK
                || ngx_tailgate_piece_text(a, "{") != NGX_OK)
            {
                return NGX_ERROR;
            }

            opened = 0;

            for (j = i; j < a->nedits; j++) {
                o = &a->edits[j];

                if (o->done || o->value.len == 0 || o->sub.len == 0
                    || !ngx_tailgate_key_is(e->top.data, e->top.len, &o->top))
                {
                    continue;
                }

                if (ngx_tailgate_adjust_key_piece(a, &o->sub, opened)
                    != NGX_OK
                    || ngx_tailgate_piece(a, o->value.data,
                                          o->value.data + o->value.len)
                       != NGX_OK)
                {
                    return NGX_ERROR;
                }

                o->done = 1;
                opened = 1;
            }

            if (ngx_tailgate_piece_text(a, "}") != NGX_OK) {
                return NGX_ERROR;
            }

            *first = 0;
            continue;
        }

        /* ,"member":value inside parent's object */

        if (ngx_tailgate_adjust_key_piece(a, &e->sub, !*first) != NGX_OK
            || ngx_tailgate_piece(a, e->value.data,
                                  e->value.data + e->value.len)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        e->done = 1;
        *first = 0;
    }

    return NGX_OK;
}


/* ,"key": in the policy's spelling (its keys need no escaping) */

static ngx_int_t
ngx_tailgate_adjust_key_piece(ngx_tailgate_adjust_t *a, ngx_str_t *key,
    ngx_uint_t comma)
{
    u_char  *p, *last;

    p = ngx_pnalloc(a->request->pool, key->len + 4);
    if (p == NULL) {
        return NGX_ERROR;
    }

    last = ngx_sprintf(p, "%s\"%V\":", comma ? "," : "", key);

    return ngx_tailgate_piece(a, p, last);
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
