/work/wt-ops/build-dev/obj/policyd/test_proto.o: tests/test_proto.c \
 src/proto.h ../proto/tailgate_protocol.h ../proto/tailgate_names.h
src/proto.h:
../proto/tailgate_protocol.h:
../proto/tailgate_names.h:
