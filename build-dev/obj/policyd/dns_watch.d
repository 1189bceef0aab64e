/work/wt-ops/build-dev/obj/policyd/dns_watch.o: src/dns_watch.c \
 src/dns_watch.h src/dns_conf.h src/log.h
src/dns_watch.h:
src/dns_conf.h:
src/log.h:
