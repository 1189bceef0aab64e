/work/wt-ops/build-dev/obj/policyd/arena.o: src/arena.c src/arena.h
src/arena.h:
