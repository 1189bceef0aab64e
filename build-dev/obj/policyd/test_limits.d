/work/wt-ops/build-dev/obj/policyd/test_limits.o: tests/test_limits.c \
 src/decide.h src/policy.h src/arena.h src/errors.h src/jwks_conf.h \
 src/limits_conf.h src/redis_conf.h src/dns_conf.h src/log.h src/price.h \
 ../proto/tailgate_names.h src/state.h src/limits_store.h \
 src/limits_admit.h src/decide.h src/state.h tests/tg_test.h src/errors.h \
 src/policy.h
src/decide.h:
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
src/state.h:
src/limits_store.h:
src/limits_admit.h:
src/decide.h:
src/state.h:
tests/tg_test.h:
src/errors.h:
src/policy.h:
