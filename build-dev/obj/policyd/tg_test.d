/work/wt-ops/build-dev/obj/policyd/tg_test.o: tests/tg_test.c \
 tests/tg_test.h src/errors.h src/policy.h src/arena.h src/errors.h \
 src/jwks_conf.h src/limits_conf.h src/redis_conf.h src/dns_conf.h \
 src/log.h src/price.h ../proto/tailgate_names.h
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
