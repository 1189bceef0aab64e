/work/wt-ops/build-dev/obj/policyd/jwks_cache.o: src/jwks_cache.c \
 src/jwks_cache.h src/jwks_conf.h
src/jwks_cache.h:
src/jwks_conf.h:
