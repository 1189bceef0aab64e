/*
 * The window of rpm and tpm, and budgets by day and month: pure functions
 * of a counter and the time (limits_store.h says why GCRA).
 *
 * A window of limit N per period P owes "debt", in units where one
 * request or token is P and N drain per millisecond.  A cost c fits when
 * debt + c * P <= N * P.  That is GCRA's test: the theoretical arrival
 * time, debt / N ms ahead of now, may be at most one period ahead.  With
 * N at most 1e9, P 60000 and a cost a u32, every product stays far below
 * 2^64; debt saturates rather than wraps.
 */

#include <string.h>
#include <time.h>

#include "limits_store.h"


#define TG_P  ((uint64_t) TG_LIMIT_PERIOD_MS)
#define TG_DEBT_MAX  (UINT64_MAX / 4)


uint64_t
tg_window_level(const tg_window *w, uint32_t limit, uint64_t now_ms)
{
    uint64_t  elapsed;

    if (w->debt == 0 || limit == 0) {
        return w->debt;
    }

    elapsed = now_ms > w->at_ms ? now_ms - w->at_ms : 0;

    /* drained entirely: also keeps elapsed * limit from overflowing */
    if (elapsed >= w->debt / limit + 1) {
        return 0;
    }

    return w->debt > elapsed * limit ? w->debt - elapsed * limit : 0;
}


bool
tg_window_fits(const tg_window *w, uint32_t limit, uint64_t cost,
    uint64_t now_ms, uint64_t *wait_ms)
{
    uint64_t  level, room;

    *wait_ms = 0;

    if (limit == 0) {
        return true;
    }

    if (cost > limit) {
        *wait_ms = TG_WAIT_NEVER;
        return false;
    }

    level = tg_window_level(w, limit, now_ms);
    room = (limit - cost) * TG_P;           /* what debt may be before */

    if (level <= room) {
        return true;
    }

    *wait_ms = (level - room + limit - 1) / limit;

    return false;
}


void
tg_window_charge(tg_window *w, uint32_t limit, int64_t cost, uint64_t now_ms)
{
    uint64_t  level, add;

    level = tg_window_level(w, limit, now_ms);

    if (cost >= 0) {
        add = (uint64_t) cost * TG_P;
        level = level > TG_DEBT_MAX - add ? TG_DEBT_MAX : level + add;

    } else {
        add = (uint64_t) -cost * TG_P;
        level = level > add ? level - add : 0;
    }

    w->debt = level;
    w->at_ms = now_ms;
    w->limit = limit;
}


uint32_t
tg_window_remaining(const tg_window *w, uint32_t limit, uint64_t now_ms)
{
    uint64_t  level, cap;

    if (limit == 0) {
        return 0;
    }

    level = tg_window_level(w, limit, now_ms);
    cap = (uint64_t) limit * TG_P;

    return level >= cap ? 0 : (uint32_t) ((cap - level) / TG_P);
}


uint64_t
tg_window_reset_ms(const tg_window *w, uint32_t limit, uint64_t now_ms)
{
    uint64_t  level;

    if (limit == 0) {
        return 0;
    }

    level = tg_window_level(w, limit, now_ms);

    return (level + limit - 1) / limit;
}


/* budgets */

static uint32_t
tg_days(int64_t now_s)
{
    return now_s > 0 ? (uint32_t) (now_s / 86400) : 0;
}


static uint32_t
tg_months(int64_t now_s)
{
    time_t     t = (time_t) now_s;
    struct tm  tm;

    if (now_s <= 0 || gmtime_r(&t, &tm) == NULL) {
        return 0;
    }

    return (uint32_t) ((tm.tm_year - 70) * 12 + tm.tm_mon);
}


void
tg_budget_roll(tg_budget *b, int64_t now_s)
{
    uint32_t  day = tg_days(now_s), month = tg_months(now_s);

    if (b->day != day) {
        b->day = day;
        b->day_spent = 0;
    }

    if (b->month != month) {
        b->month = month;
        b->month_spent = 0;
    }
}


void
tg_budget_spend(tg_budget *b, uint64_t cost, int64_t now_s)
{
    tg_budget_roll(b, now_s);

    b->day_spent = b->day_spent > UINT64_MAX - cost ? UINT64_MAX
                                                    : b->day_spent + cost;
    b->month_spent = b->month_spent > UINT64_MAX - cost
                     ? UINT64_MAX : b->month_spent + cost;
}


/* seconds to the next UTC midnight, or to the first of the next month */

static uint32_t
tg_until_next(int64_t now_s, bool month)
{
    time_t     t = (time_t) now_s;
    struct tm  tm;
    int64_t    next;

    if (!month) {
        return (uint32_t) (86400 - (now_s > 0 ? now_s % 86400 : 0));
    }

    if (gmtime_r(&t, &tm) == NULL) {
        return 86400;
    }

    tm.tm_mon += 1;
    tm.tm_mday = 1;
    tm.tm_hour = 0;
    tm.tm_min = 0;
    tm.tm_sec = 0;

    next = (int64_t) timegm(&tm);

    return next > now_s ? (uint32_t) (next - now_s) : 86400;
}


uint32_t
tg_budget_over(const tg_budget *b, const tg_limit_profile *lp, int64_t now_s,
    bool *monthly)
{
    bool       same_day, same_month;

    same_day = b->day == tg_days(now_s);
    same_month = b->month == tg_months(now_s);

    /* the month first: waiting for tomorrow would not help */

    if (lp->budget_month != 0 && same_month
        && b->month_spent >= lp->budget_month)
    {
        *monthly = true;
        return tg_until_next(now_s, true);
    }

    if (lp->budget_day != 0 && same_day && b->day_spent >= lp->budget_day) {
        *monthly = false;
        return tg_until_next(now_s, false);
    }

    return 0;
}


/* several nodes */

uint32_t
tg_limit_share(uint32_t limit, uint32_t nodes)
{
    uint32_t  share;

    if (limit == 0 || nodes <= 1) {
        return limit;
    }

    share = limit / nodes;

    return share != 0 ? share : 1;
}


uint64_t
tg_limit_share64(uint64_t amount, uint32_t nodes)
{
    uint64_t  share;

    if (amount == 0 || nodes <= 1) {
        return amount;
    }

    share = amount / nodes;

    return share != 0 ? share : 1;
}


void
tg_counter_learn_slots(tg_counter *c, uint32_t held, uint64_t now_ms)
{
    c->slots_held = held;
    c->slots_until_ms = now_ms + TG_LIMIT_SLOTS_SEEN_MS;
}


void
tg_counter_learn(tg_counter *c, uint32_t rpm, uint32_t tpm,
    uint64_t requests_debt, uint64_t tokens_debt, uint64_t day_spent,
    uint64_t month_spent, uint64_t now_ms, int64_t wall_s)
{
    if (rpm != 0) {
        c->requests.debt = requests_debt > TG_DEBT_MAX ? TG_DEBT_MAX
                                                       : requests_debt;
        c->requests.at_ms = now_ms;
        c->requests.limit = rpm;
    }

    if (tpm != 0) {
        c->tokens.debt = tokens_debt > TG_DEBT_MAX ? TG_DEBT_MAX
                                                   : tokens_debt;
        c->tokens.at_ms = now_ms;
        c->tokens.limit = tpm;
    }

    /* Redis's day and month are the ones of now: its script rolled them */

    tg_budget_roll(&c->budget, wall_s);
    c->budget.day_spent = day_spent;
    c->budget.month_spent = month_spent;
}


/*
 * The tallies' windows drain at the whole limit (a node's share times the
 * nodes, the limit to rounding), as Redis's window would have drained
 * the takes had it seen them.
 */

static uint32_t
tg_away_limit(uint32_t share, uint32_t nodes)
{
    uint64_t  whole = (uint64_t) share * (nodes != 0 ? nodes : 1);

    return whole > UINT32_MAX ? UINT32_MAX : (uint32_t) whole;
}


void
tg_counter_away_charge(tg_counter *c, uint32_t nodes, uint32_t share_rpm,
    int64_t requests, uint32_t share_tpm, int64_t tokens, uint64_t now_ms)
{
    if (requests != 0 && share_rpm != 0) {
        tg_window_charge(&c->away_requests, tg_away_limit(share_rpm, nodes),
                         requests, now_ms);
    }

    if (tokens != 0 && share_tpm != 0) {
        tg_window_charge(&c->away_tokens, tg_away_limit(share_tpm, nodes),
                         tokens, now_ms);
    }
}


void
tg_counter_away_spend(tg_counter *c, uint64_t cost, int64_t wall_s)
{
    if (cost != 0) {
        tg_budget_spend(&c->away_budget, cost, wall_s);
    }
}


bool
tg_counter_reconcile(const tg_counter *c, uint64_t now_ms, int64_t wall_s,
    tg_reconcile_part *out)
{
    tg_budget  b = c->away_budget;

    memset(out, 0, sizeof(*out));

    if (c->away_requests.limit != 0) {
        out->requests_debt = tg_window_level(&c->away_requests,
                                             c->away_requests.limit, now_ms);
        out->rpm = out->requests_debt != 0 ? c->away_requests.limit : 0;
    }

    if (c->away_tokens.limit != 0) {
        out->tokens_debt = tg_window_level(&c->away_tokens,
                                           c->away_tokens.limit, now_ms);
        out->tpm = out->tokens_debt != 0 ? c->away_tokens.limit : 0;
    }

    /* a day or month that is over is not Redis's to hear of */

    if (b.day != 0 || b.month != 0 || b.day_spent != 0
        || b.month_spent != 0)
    {
        tg_budget_roll(&b, wall_s);
        out->day = b.day;
        out->day_spent = b.day_spent;
        out->month = b.month;
        out->month_spent = b.month_spent;
    }

    return out->requests_debt != 0 || out->tokens_debt != 0
           || out->day_spent != 0 || out->month_spent != 0;
}


void
tg_counter_reconciled(tg_counter *c)
{
    memset(&c->away_requests, 0, sizeof(c->away_requests));
    memset(&c->away_tokens, 0, sizeof(c->away_tokens));
    memset(&c->away_budget, 0, sizeof(c->away_budget));
}
