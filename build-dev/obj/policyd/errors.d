/work/wt-ops/build-dev/obj/policyd/errors.o: src/errors.c src/errors.h \
 src/log.h
src/errors.h:
src/log.h:
