/work/wt-ops/build-dev/obj/policyd/usage_cli.o: src/usage_cli.c \
 src/price.h src/usage_cli.h src/usage_read.h
src/price.h:
src/usage_cli.h:
src/usage_read.h:
