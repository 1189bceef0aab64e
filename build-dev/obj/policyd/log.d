/work/wt-ops/build-dev/obj/policyd/log.o: src/log.c src/log.h \
 src/log_json.h
src/log.h:
src/log_json.h:
