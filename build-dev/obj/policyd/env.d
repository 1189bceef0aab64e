/work/wt-ops/build-dev/obj/policyd/env.o: src/env.c src/env.h
src/env.h:
