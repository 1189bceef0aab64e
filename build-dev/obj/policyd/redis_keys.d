/work/wt-ops/build-dev/obj/policyd/redis_keys.o: src/redis_keys.c \
 src/redis_keys.h
src/redis_keys.h:
