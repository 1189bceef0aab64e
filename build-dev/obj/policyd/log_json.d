/work/wt-ops/build-dev/obj/policyd/log_json.o: src/log_json.c \
 src/json_out.h src/log_json.h
src/json_out.h:
src/log_json.h:
