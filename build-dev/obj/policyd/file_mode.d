/work/wt-ops/build-dev/obj/policyd/file_mode.o: src/file_mode.c \
 src/file_mode.h
src/file_mode.h:
