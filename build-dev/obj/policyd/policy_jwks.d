/work/wt-ops/build-dev/obj/policyd/policy_jwks.o: src/policy_jwks.c \
 src/jwks_cache.h src/jwks_conf.h src/policy_json.h src/policy.h \
 src/arena.h src/errors.h src/limits_conf.h src/redis_conf.h \
 src/dns_conf.h src/log.h src/price.h ../proto/tailgate_names.h
src/jwks_cache.h:
src/jwks_conf.h:
src/policy_json.h:
src/policy.h:
src/arena.h:
src/errors.h:
src/limits_conf.h:
src/redis_conf.h:
src/dns_conf.h:
src/log.h:
src/price.h:
../proto/tailgate_names.h:
