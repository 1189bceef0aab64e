/work/wt-ops/build-dev/obj/policyd/limits_admit.o: src/limits_admit.c \
 src/limits_admit.h src/decide.h src/policy.h src/arena.h src/errors.h \
 src/jwks_conf.h src/limits_conf.h src/redis_conf.h src/dns_conf.h \
 src/log.h src/price.h ../proto/tailgate_names.h src/state.h \
 src/limits_store.h
src/limits_admit.h:
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
