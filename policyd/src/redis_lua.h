/*
 * The Lua that the scripts begin with: TG_LUA_NOW every one (redis.c's
 * leases, redis_slots.c's slots), TG_LUA_CLOCK the limits' (redis.c's
 * take, redis_reconcile.c's reconcile and corrections).  The time from
 * Redis itself (TIME), so that nodes whose clocks differ agree; its UTC
 * day and month; P, the window's units of one request; level(), a GCRA
 * debt drained to now; keep(), a counter's TTL as long as its budgets
 * need.
 */

#ifndef TG_REDIS_LUA_H
#define TG_REDIS_LUA_H


/* now, in ms on Redis's clock: what every script begins with */
#define TG_LUA_NOW \
    "local t = redis.call('TIME')\n" \
    "local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

#define TG_LUA_CLOCK \
    TG_LUA_NOW \
    "local day = math.floor(t[1] / 86400)\n" \
    "local z = day + 719468\n" \
    "local era = math.floor(z / 146097)\n" \
    "local doe = z - era * 146097\n" \
    "local yoe = math.floor((doe - math.floor(doe / 1460) +" \
    " math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)\n" \
    "local doy = doe - (365 * yoe + math.floor(yoe / 4) -" \
    " math.floor(yoe / 100))\n" \
    "local mp = math.floor((5 * doy + 2) / 153)\n" \
    "local mon = mp < 10 and mp + 3 or mp - 9\n" \
    "local yr = yoe + era * 400 + (mon <= 2 and 1 or 0)\n" \
    "local month = (yr - 1970) * 12 + mon - 1\n" \
    "local P = 60000\n" \
    "local function level(debt, at, lim)\n" \
    "  debt = tonumber(debt) or 0\n" \
    "  at = tonumber(at) or now\n" \
    "  if lim == 0 or debt == 0 then return debt end\n" \
    "  local l = debt - math.max(0, now - at) * lim\n" \
    "  if l < 0 then return 0 end\n" \
    "  return l\n" \
    "end\n" \
    "local function keep(key, bd, bm)\n" \
    "  local ttl = 120000\n" \
    "  if bm > 0 then ttl = 2764800000 elseif bd > 0 then ttl = 172800000 end\n" \
    "  if redis.call('PTTL', key) < ttl then" \
    " redis.call('PEXPIRE', key, ttl) end\n" \
    "end\n"


#endif /* TG_REDIS_LUA_H */
