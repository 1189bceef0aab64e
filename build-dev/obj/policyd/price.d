/work/wt-ops/build-dev/obj/policyd/price.o: src/price.c src/price.h
src/price.h:
