/work/wt-ops/build-dev/obj/policyd/limits_store.o: src/limits_store.c \
 src/limits_store.h src/limits_conf.h src/policy.h src/arena.h \
 src/errors.h src/jwks_conf.h src/redis_conf.h src/dns_conf.h src/log.h \
 src/price.h ../proto/tailgate_names.h
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
