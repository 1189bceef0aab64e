/work/wt-ops/build-dev/obj/policyd/json_out.o: src/json_out.c \
 src/json_out.h
src/json_out.h:
