/work/wt-ops/build-dev/obj/policyd/sock.o: src/sock.c src/log.h \
 src/sock.h src/policy.h src/arena.h src/errors.h src/jwks_conf.h \
 src/limits_conf.h src/redis_conf.h src/dns_conf.h src/price.h \
 ../proto/tailgate_names.h
src/log.h:
src/sock.h:
src/policy.h:
src/arena.h:
src/errors.h:
src/jwks_conf.h:
src/limits_conf.h:
src/redis_conf.h:
src/dns_conf.h:
src/price.h:
../proto/tailgate_names.h:
