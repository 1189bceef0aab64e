
/*
 * Copyright (C) The Tailgate authors
 */


#ifndef _NGX_TAILGATE_SIPHASH_H_INCLUDED_
#define _NGX_TAILGATE_SIPHASH_H_INCLUDED_


#define NGX_TAILGATE_SIPHASH_KEY_LEN  16
#define NGX_TAILGATE_SIPHASH_LEN      16


void ngx_tailgate_siphash128(const unsigned char *key,
    const unsigned char *data, size_t len, unsigned char *out);


#endif /* _NGX_TAILGATE_SIPHASH_H_INCLUDED_ */
