/work/wt-ops/build-dev/obj/policyd/usage_read.o: src/usage_read.c \
 src/price.h src/usage_read.h
src/price.h:
src/usage_read.h:
