/work/wt-ops/build-dev/obj/policyd/test_redis.o: tests/test_redis.c \
 src/redis_keys.h tests/tg_test.h src/errors.h src/policy.h src/arena.h \
 src/errors.h src/jwks_conf.h src/limits_conf.h src/redis_conf.h \
 src/dns_conf.h src/log.h src/price.h ../proto/tailgate_names.h
src/redis_keys.h:
tests/tg_test.h:
src/errors.h:
src/policy.h:
src/arena.h:
src/errors.h:
src/jwks_conf.h:
src/limits_conf.h:
src/redis_conf.h:
src/dns_conf.h:
src/log.h:
src/price.h:
../proto/tailgate_names.h:
