/work/wt-ops/build-dev/obj/policyd/proto.o: src/proto.c src/proto.h \
 ../proto/tailgate_protocol.h ../proto/tailgate_names.h
src/proto.h:
../proto/tailgate_protocol.h:
../proto/tailgate_names.h:
