/work/wt-ops/build-dev/obj/policyd/frames.o: src/frames.c src/answer.h \
 src/conn.h src/daemon.h src/decide.h src/policy.h src/arena.h \
 src/errors.h src/jwks_conf.h src/limits_conf.h src/redis_conf.h \
 src/dns_conf.h src/log.h src/price.h ../proto/tailgate_names.h \
 src/state.h src/limits_store.h src/probe.h src/proto.h \
 ../proto/tailgate_protocol.h ../proto/tailgate_names.h src/sock.h \
 src/status.h src/otlp_export.h src/otlp_conf.h src/defer.h src/frames.h \
 src/jwks.h src/queue.h src/usage.h src/version.h
src/answer.h:
src/conn.h:
src/daemon.h:
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
src/probe.h:
src/proto.h:
../proto/tailgate_protocol.h:
../proto/tailgate_names.h:
src/sock.h:
src/status.h:
src/otlp_export.h:
src/otlp_conf.h:
src/defer.h:
src/frames.h:
src/jwks.h:
src/queue.h:
src/usage.h:
src/version.h:
