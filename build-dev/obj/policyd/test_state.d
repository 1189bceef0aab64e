/work/wt-ops/build-dev/obj/policyd/test_state.o: tests/test_state.c \
 src/state.h src/limits_store.h src/limits_conf.h src/policy.h \
 src/arena.h src/errors.h src/jwks_conf.h src/redis_conf.h src/dns_conf.h \
 src/log.h src/price.h ../proto/tailgate_names.h \
 ../proto/tailgate_protocol.h ../proto/tailgate_names.h tests/tg_test.h \
 src/errors.h src/policy.h
src/state.h:
src/limits_store.h:
src/limits_conf.h:
src/policy.h:
src/arena.h:
src/errors.h:
src/jwks_conf.h:
src/redis_conf.h:
src/dns_conf.h:
src/log.h:
src/price.h:
../proto/tailgate_names.h:
../proto/tailgate_protocol.h:
../proto/tailgate_names.h:
tests/tg_test.h:
src/errors.h:
src/policy.h:
