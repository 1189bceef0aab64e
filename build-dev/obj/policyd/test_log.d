/work/wt-ops/build-dev/obj/policyd/test_log.o: tests/test_log.c \
 src/json_out.h src/log.h src/log_json.h
src/json_out.h:
src/log.h:
src/log_json.h:
