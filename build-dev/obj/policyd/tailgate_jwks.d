/work/wt-ops/build-dev/obj/policyd/tailgate_jwks.o: \
 ../proto/tailgate_jwks.c ../proto/tailgate_jwks.h
../proto/tailgate_jwks.h:
