/*
 * Prices and what a request cost (docs/policy.md, "Usage and cost").
 *
 * Prices are exact integers: micro-units of the policy's currency per
 * million tokens, per minute of audio and per million characters.  A cost
 * is then exact in pico-units (1e-12 of the currency): tokens times the
 * price per million tokens in micro-units.  Audio alone is rounded, to the
 * nearest pico-unit, exactly as the module rounds it for $tailgate_cost
 * (ngx_tailgate_meter_cost()), so that both say the same.  Pure functions.
 */

#ifndef TG_PRICE_H
#define TG_PRICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>


/* the module reads each price as at most 12 digits (micro-units) */
#define TG_PRICE_MICRO_MAX   999999999999ULL

/* "IN CACHED OUT MIN CHARS": five numbers of 12 digits and spaces */
#define TG_PRICE_TEXT_MAX    72

/* the longest cost text: 20 digits, a point, and the NUL */
#define TG_MONEY_TEXT_MAX    24


typedef struct {
    uint64_t        input;          /* per million input tokens */
    uint64_t        cached_input;   /* per million of those read cached */
    uint64_t        output;         /* per million output tokens */
    uint64_t        audio_minute;   /* per minute of transcribed audio */
    uint64_t        characters;     /* per million characters of speech */
} tg_price;


/* what an attempt used, as its REPORT says */
typedef struct {
    uint32_t        input;
    uint32_t        cached;         /* of the input */
    uint32_t        output;
    uint32_t        audio_ms;
    uint32_t        characters;
} tg_price_usage;


/*
 * The cost in pico-units into *cost: 0, or -1 when it does not fit 64
 * bits (more than 18446744 units of currency for one request), and then
 * *cost is UINT64_MAX.  Cached tokens beyond the input count as input.
 */
int tg_price_cost(const tg_price *p, const tg_price_usage *u, uint64_t *cost);

/*
 * A price as the policy writes it, a JSON number in units of the currency
 * (0.27 per million tokens), in micro-units: 0, or -1 when it is negative,
 * not finite, 1000000 or more, or has more than 6 decimals.
 */
int tg_price_micro(double v, uint64_t *micro);

/* "IN CACHED OUT MIN CHARS" for DECISION's prices (protocol.md) */
void tg_price_text(const tg_price *p, char *buf, size_t size);

/*
 * A cost in pico-units as a decimal in units of the currency, trailing
 * zeros cut: "0.00041", "12", "0" - as the module shows $tailgate_cost.
 * Returns the length.
 */
size_t tg_money_text(uint64_t pico, char *buf, size_t size);

/* The same back ("0.00041", at most 12 decimals): 0, or -1 */
int tg_money_parse(const char *s, size_t len, uint64_t *pico);


#endif /* TG_PRICE_H */
