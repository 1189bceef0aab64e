/work/wt-ops/build-dev/obj/policyd/otlp_conf.o: src/otlp_conf.c \
 src/otlp_conf.h src/errors.h
src/otlp_conf.h:
src/errors.h:
