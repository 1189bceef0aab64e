/work/wt-ops/build-dev/obj/policyd/test_models.o: tests/test_models.c \
 tests/tg_decide_test.h src/decide.h src/policy.h src/arena.h \
 src/errors.h src/jwks_conf.h src/limits_conf.h src/redis_conf.h \
 src/dns_conf.h src/log.h src/price.h ../proto/tailgate_names.h \
 src/state.h src/limits_store.h tests/tg_test.h src/errors.h src/policy.h
tests/tg_decide_test.h:
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
tests/tg_test.h:
src/errors.h:
src/policy.h:
