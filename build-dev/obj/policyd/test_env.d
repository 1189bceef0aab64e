/work/wt-ops/build-dev/obj/policyd/test_env.o: tests/test_env.c src/env.h
src/env.h:
