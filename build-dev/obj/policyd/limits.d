/work/wt-ops/build-dev/obj/policyd/limits.o: src/limits.c \
 src/limits_store.h src/limits_conf.h
src/limits_store.h:
src/limits_conf.h:
