/work/wt-ops/build-dev/obj/policyd/main.o: src/main.c src/explain.h \
 src/file_mode.h src/usage_cli.h src/log.h src/otlp_export.h \
 src/otlp_conf.h src/errors.h src/policy.h src/arena.h src/jwks_conf.h \
 src/limits_conf.h src/redis_conf.h src/dns_conf.h src/price.h \
 ../proto/tailgate_names.h src/proto.h ../proto/tailgate_protocol.h \
 ../proto/tailgate_names.h src/state.h src/limits_store.h src/server.h \
 src/sock.h
src/explain.h:
src/file_mode.h:
src/usage_cli.h:
src/log.h:
src/otlp_export.h:
src/otlp_conf.h:
src/errors.h:
src/policy.h:
src/arena.h:
src/jwks_conf.h:
src/limits_conf.h:
src/redis_conf.h:
src/dns_conf.h:
src/price.h:
../proto/tailgate_names.h:
src/proto.h:
../proto/tailgate_protocol.h:
../proto/tailgate_names.h:
src/state.h:
src/limits_store.h:
src/server.h:
src/sock.h:
