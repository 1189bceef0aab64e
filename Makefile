# Tailgate: ngx_tailgate_module (nginx dynamic module) + policyd.
#
#   make run      install packages, build, start a demo gateway (Ctrl-C stops)
#   make test     build, then every test under prove: the suite, then the
#                 suite again under AddressSanitizer and UBSan
#   make check    the suite only (SANITIZE=1 make check: sanitized only)
#   make          build build/ngx_tailgate_module.so and build/policyd
#   make deps     install the Debian packages needed to build and test
#   make bench    benchmarks against bare nginx proxying (see bench/)
#   make fuzz     build the libFuzzer harnesses, run each for FUZZ_SECONDS
#   make fuzz-build  only build them (fuzz/README.md)
#   make install  the module, policyd, tailgate-key, nginx includes, the
#                 systemd unit, docs (PREFIX, DESTDIR; docs/operations.md)
#   make deb      a Debian package of the same, tied to nginx's ABI
#
# NGINX_SRC is the nginx tree to build the module against: Debian's
# nginx-dev by default (its configure flags come from conf_flags, so the
# module loads into /usr/sbin/nginx), or any nginx source tree.
# SANITIZE=1 builds both programs with AddressSanitizer and UBSan (which
# stops at its first finding) into build-asan/.

NGINX_SRC ?= /usr/share/nginx/src
NGINX     ?= /usr/sbin/nginx
SANITIZE  ?=

ifeq ($(SANITIZE),1)
BUILD     ?= build-asan
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
             -fno-omit-frame-pointer
export TAILGATE_NGINX_PRELOAD := $(shell $(CC) -print-file-name=libasan.so)
HARDEN_CFLAGS  :=
HARDEN_LDFLAGS :=
else
BUILD     ?= build
SAN_FLAGS :=
# hardened as Debian builds its nginx (nginx -V), which the module runs in
# (a sanitized build goes without: _FORTIFY_SOURCE and ASan disagree)
HARDEN_CFLAGS  := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -Wformat \
                  -Werror=format-security
HARDEN_LDFLAGS := -Wl,-z,relro -Wl,-z,now
endif

NGX_CC_OPT := -g -O2 -fPIC $(SAN_FLAGS) $(HARDEN_CFLAGS)
NGX_LD_OPT := -fPIC $(SAN_FLAGS) $(HARDEN_LDFLAGS)

ROOT      := $(CURDIR)
NGX_TREE  := $(ROOT)/$(BUILD)/nginx
MODULE    := $(ROOT)/$(BUILD)/ngx_tailgate_module.so
POLICYD   := $(ROOT)/$(BUILD)/policyd
MODULE_SRCS := $(wildcard ngx_tailgate_module/*.c ngx_tailgate_module/*.h proto/*.h) \
               ngx_tailgate_module/config

DEB_PACKAGES := build-essential nginx nginx-dev libjwt-dev libcjson-dev \
                libhiredis-dev libev-dev libcmocka-dev libcurl4-openssl-dev \
                libssl-dev redis-server wrk perl \
                clang libclang-rt-14-dev
# what only tests use: the package's lintian check, the unit's
# systemd-analyze score (the tests skip without them; CI has them)
TEST_PACKAGES := lintian systemd

export TAILGATE_NGINX  ?= $(NGINX)
export TAILGATE_MODULE := $(MODULE)
export TAILGATE_POLICYD := $(POLICYD)


.PHONY: all module policyd unit-tests deps test check run bench fuzz fuzz-build \
        clean install deb FORCE

all: module policyd

module: $(MODULE)

# configure again when its flags change
$(NGX_TREE).flags: FORCE
	@mkdir -p $(dir $@)
	@echo '$(NGX_CC_OPT) | $(NGX_LD_OPT)' | cmp -s - $@ \
	    || echo '$(NGX_CC_OPT) | $(NGX_LD_OPT)' > $@

# configure writes into the tree it runs in: use a private copy
$(NGX_TREE)/objs/Makefile: ngx_tailgate_module/config $(NGX_TREE).flags
	rm -rf $(NGX_TREE)
	mkdir -p $(dir $(NGX_TREE))
	cp -r $(NGINX_SRC) $(NGX_TREE)
	cd $(NGX_TREE) && bash -c ' \
	    flags=(); \
	    if [ -f conf_flags ]; then . ./conf_flags; \
	        flags=("$${NGX_CONF_FLAGS[@]}"); else flags=(--with-compat); fi; \
	    ./configure "$${flags[@]}" \
	        --with-cc-opt="$(NGX_CC_OPT)" \
	        --with-ld-opt="$(NGX_LD_OPT)" \
	        --add-dynamic-module=$(ROOT)/ngx_tailgate_module' \
	    > $(NGX_TREE).configure.log 2>&1 \
	    || { tail -30 $(NGX_TREE).configure.log; exit 1; }

$(MODULE): $(NGX_TREE)/objs/Makefile $(MODULE_SRCS)
	$(MAKE) -C $(NGX_TREE) -f objs/Makefile modules
	@# a new inode: running nginx masters keep the old file mapped
	cp $(NGX_TREE)/objs/ngx_http_tailgate_module.so $@.tmp
	mv -f $@.tmp $@

POLICYD_MAKE = $(MAKE) -C policyd BUILD=$(ROOT)/$(BUILD) \
                   CFLAGS="-O2 -g $(SAN_FLAGS) $(HARDEN_CFLAGS)" \
                   LDFLAGS="$(SAN_FLAGS) $(HARDEN_LDFLAGS)"

policyd:
	$(POLICYD_MAKE) all

unit-tests: policyd
	$(POLICYD_MAKE) tests

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	        | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    sudo= ; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	    $$sudo apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
	        --no-install-recommends $$missing; \
	fi

# every test: the suite (with each fuzz harness for a short while), then
# the same suite under AddressSanitizer and UBSan (the fuzz harnesses are
# sanitized already: not run twice)
test: deps
	@$(MAKE) --no-print-directory DEB_PACKAGES="$(TEST_PACKAGES)" deps
	$(MAKE) check
	TAILGATE_FUZZ_SECONDS=0 $(MAKE) SANITIZE=1 check

# the suite alone, with this build (SANITIZE=1: the sanitized one)
check: all unit-tests
	prove -r t/

run: deps all
	@perl conf/demo/run-demo.pl

bench: all
	@perl bench/run.pl

# the harnesses need the configured nginx tree only (its headers and
# objs/ngx_auto_config.h), not the module; FUZZ_SECONDS, FUZZ_TARGETS,
# FUZZ_JOBS, FUZZ_RSS_MB given here reach fuzz/Makefile too
FUZZ_SECONDS ?= 60
FUZZ_MAKE = $(MAKE) -C fuzz NGX_TREE=$(NGX_TREE) OUT=$(ROOT)/$(BUILD)/fuzz \
                FUZZ_SECONDS=$(FUZZ_SECONDS)

fuzz-build: $(NGX_TREE)/objs/Makefile
	$(FUZZ_MAKE) build

fuzz: fuzz-build
	$(FUZZ_MAKE) run

clean:
	rm -rf build build-asan

# --- installing (docs/operations.md) ------------------------------------
#
# PREFIX for the programs, the unit and the docs; SYSCONFDIR is /etc
# whatever PREFIX is, since nginx and systemd look there; DESTDIR stages
# it all under a directory (the package does).  Files under
# SYSCONFDIR/tailgate that exist already are never replaced.  Installed
# as root with no DESTDIR (and not SETUP=no), packaging/install-setup.sh
# then creates the user "tailgate" and gives the policy and the keys their
# groups.

PREFIX      ?= /usr/local
SYSCONFDIR  ?= /etc
BINDIR      ?= $(PREFIX)/bin
SBINDIR     ?= $(PREFIX)/sbin
DATADIR     ?= $(PREFIX)/share
MODULEDIR   ?= $(PREFIX)/lib/nginx/modules
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DOCDIR      ?= $(DATADIR)/doc/tailgate
MANDIR      ?= $(DATADIR)/man
TAILGATE_DATADIR ?= $(DATADIR)/tailgate
INSTALL     ?= install
POD2MAN     ?= pod2man --center=Tailgate --release=tailgate --date=2026-12-03

D := $(DESTDIR)

# the paths the installed files name, put in their @NAMES@
INSTALL_SUBST = sed -e 's|/etc/tailgate/|$(SYSCONFDIR)/tailgate/|g' \
                    -e 's|@SBINDIR@|$(SBINDIR)|g' \
                    -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
                    -e 's|@DOCDIR@|$(DOCDIR)|g' \
                    -e 's|@MODULEDIR@|$(MODULEDIR)|g'

# a file with the paths put in, with its mode whatever the umask
install_subst = $(INSTALL_SUBST) $(1) | $(INSTALL) -m 0644 /dev/stdin $(2)

# an example in SYSCONFDIR/tailgate, unless the operator's file is there
install_once = @if [ -e $(strip $(2)) ]; then echo "kept $(strip $(2))"; \
        else echo "$(INSTALL) -m $(3) $(1) $(strip $(2))"; \
             $(INSTALL) -m $(3) $(1) $(strip $(2)); fi

# NO_BUILD=1: what is built already (MODULE=, POLICYD= may name it), as
# the tests install the build they test
install: $(if $(NO_BUILD),,all)
	@for f in $(MODULE) $(POLICYD); do [ -f $$f ] || \
	    { echo "install: $$f is not built (make all)" >&2; exit 1; }; done
	$(INSTALL) -d -m 0755 $(D)$(MODULEDIR) $(D)$(SBINDIR) $(D)$(BINDIR) \
	    $(D)$(DATADIR)/nginx/modules-available $(D)$(UNITDIR) \
	    $(D)$(UNITDIR)/nginx.service.d $(D)$(SYSUSERSDIR) \
	    $(D)$(SYSCONFDIR)/nginx/tailgate $(D)$(SYSCONFDIR)/tailgate \
	    $(D)$(SYSCONFDIR)/logrotate.d $(D)$(TAILGATE_DATADIR) \
	    $(D)$(DOCDIR)/examples/two-nodes $(D)$(MANDIR)/man1 $(D)$(MANDIR)/man8
	$(INSTALL) -m 0644 $(MODULE) $(D)$(MODULEDIR)/ngx_http_tailgate_module.so
	$(INSTALL) -m 0755 $(POLICYD) $(D)$(SBINDIR)/policyd
	$(INSTALL) -m 0755 bin/tailgate-key $(D)$(BINDIR)/tailgate-key
	$(call install_subst,packaging/files/mod-http-tailgate.conf.in,\
	    $(D)$(DATADIR)/nginx/modules-available/mod-http-tailgate.conf)
	$(call install_subst,packaging/systemd/tailgate-policyd.service.in,\
	    $(D)$(UNITDIR)/tailgate-policyd.service)
	$(INSTALL) -m 0644 packaging/systemd/nginx-tailgate.conf \
	    $(D)$(UNITDIR)/nginx.service.d/tailgate.conf
	$(INSTALL) -m 0644 packaging/files/sysusers.conf \
	    $(D)$(SYSUSERSDIR)/tailgate.conf
	$(INSTALL) -m 0644 packaging/files/logrotate \
	    $(D)$(SYSCONFDIR)/logrotate.d/tailgate
	for f in conf/tailgate/*; do \
	    $(call install_subst,$$f,$(D)$(SYSCONFDIR)/nginx/tailgate/$${f##*/}); \
	done
	$(INSTALL) -m 0644 packaging/files/keys $(D)$(TAILGATE_DATADIR)/keys
	$(call install_once,conf/policy.example.json,\
	    $(D)$(SYSCONFDIR)/tailgate/policy.json,0640)
	$(call install_once,packaging/files/policyd.env.example,\
	    $(D)$(SYSCONFDIR)/tailgate/policyd.env,0600)
	$(call install_once,packaging/files/keys,\
	    $(D)$(SYSCONFDIR)/tailgate/keys,0640)
	$(INSTALL) -m 0644 README.md docs/*.md $(D)$(DOCDIR)/
	$(INSTALL) -m 0644 conf/policy.example.json conf/nginx-tls.example.conf \
	    conf/tailgate/upstreams.conf.example \
	    packaging/files/policyd.env.example $(D)$(DOCDIR)/examples/
	$(INSTALL) -m 0644 conf/two-nodes/* $(D)$(DOCDIR)/examples/two-nodes/
	$(POD2MAN) --section=1 --name=TAILGATE-KEY bin/tailgate-key \
	    | $(INSTALL) -m 0644 /dev/stdin $(D)$(MANDIR)/man1/tailgate-key.1
	$(POD2MAN) --section=8 --name=POLICYD packaging/man/policyd.pod \
	    | $(INSTALL) -m 0644 /dev/stdin $(D)$(MANDIR)/man8/policyd.8
	@if [ "$(SETUP)" = no ]; then :; \
	elif [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
	    sh packaging/install-setup.sh $(SYSCONFDIR); \
	else \
	    echo "as root, next: sh packaging/install-setup.sh $(SYSCONFDIR)" \
	         "(the user tailgate, the files' groups)"; \
	fi

# --- the Debian package (packaging/deb/build.sh) --------------------------
#
# DEB_DIR is where it is written; DEB_VERSION, DEB_MAINTAINER may be set.
# NO_BUILD=1 as for install.

DEB_DIR ?= $(ROOT)/$(BUILD)

deb: $(if $(NO_BUILD),,all)
	@MAKE="$(MAKE)" sh packaging/deb/build.sh "$(DEB_DIR)" "$(MODULE)" \
	    "$(POLICYD)" "$(NGINX_SRC)"

FORCE:
