/work/wt-ops/build-dev/obj/policyd/otlp_trace.o: src/otlp_trace.c \
 src/otlp_span.h src/otlp_conf.h src/errors.h src/proto.h \
 ../proto/tailgate_protocol.h ../proto/tailgate_names.h src/state.h \
 src/limits_store.h src/limits_conf.h src/policy.h src/arena.h \
 src/jwks_conf.h src/redis_conf.h src/dns_conf.h src/log.h src/price.h \
 ../proto/tailgate_names.h
src/otlp_span.h:
src/otlp_conf.h:
src/errors.h:
src/proto.h:
../proto/tailgate_protocol.h:
../proto/tailgate_names.h:
src/state.h:
src/limits_store.h:
src/limits_conf.h:
src/policy.h:
src/arena.h:
src/jwks_conf.h:
src/redis_conf.h:
src/dns_conf.h:
src/log.h:
src/price.h:
../proto/tailgate_names.h:
