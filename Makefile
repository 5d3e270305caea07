# ngx_chat: build, test and run.
#
#   make deps      Debian packages (apt-get only for what is missing), the
#                  nginx source and the Kafka jars (cached in $(CHAT_CACHE))
#   make build     nginx with the chat module (static), chat_worker, chatctl
#   make unit      C unit tests t/unit/test_*.c
#   make calls     the calls between the module's files and between the
#                  worker's (no circles)
#   make test-js   unit tests of the JavaScript client (node --test)
#   make test      deps, build, unit, then the integration tests (pytest)
#   make run       deps, build, then the whole stack in ./var (foreground)
#   make dynamic   check that the module also builds as a dynamic module
#   make install   PREFIX=... [DESTDIR=...]: nginx with the module, the
#                  workers, chatctl, sql/, the web client, the systemd
#                  units and the example configuration
#   make fuzz      libFuzzer targets t/fuzz/fuzz_*.c, FUZZ_SECONDS (30) each
#   make bench-deflate  permessage-deflate's ratio and CPU on chat frames
#   make bench-deflate-wire  its bytes on the wire against the stack
#   make bench-typing   typing by the Redis script against the Kafka way
#   make clean
#
# SANITIZE=1 builds everything with ASan and UBSan into build-san/ instead
# of build/ (make SANITIZE=1 test runs the tests against that build).

SHELL := /bin/bash

# Every top-level target is coarse; nginx's own make gets -j below.
.NOTPARALLEL:

CHAT_CACHE ?= $(or $(HOME),/root)/.cache/ngx_chat
export CHAT_CACHE

SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD := build-san
# gcc leaves float-cast-overflow out of "undefined"; clang's fuzzers do not
SAN   := -fsanitize=address,undefined,float-cast-overflow \
         -fno-omit-frame-pointer
else
BUILD := build
SAN   :=
endif

# what `make test` and `make run` hand to t/stack.sh
export CHAT_BUILD_DIR := $(CURDIR)/$(BUILD)

CC     ?= cc
CFLAGS_CHAT := -O2 -g -Wall -Wextra -Werror -std=gnu11 \
               -I/usr/include/postgresql -Ingx_chat_module $(SAN)
NGX_JOBS ?= 2

# ---------------------------------------------------------------- packages

DEB_PKGS := build-essential libssl-dev libpcre2-dev zlib1g-dev \
            libhiredis-dev librdkafka-dev libjansson-dev libpq-dev \
            postgresql redis-server kcat maven dpkg-dev openssl \
            prometheus python3-prometheus-client libcurl4-openssl-dev \
            libgraphicsmagick1-dev

# apt-get as root, through sudo otherwise
APT := $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get

# ------------------------------------------------------------ nginx source

NGINX_DEB_VERSION ?= 1.22.1-9+deb12u9
NGINX_APT_DIR := $(CHAT_CACHE)/nginx-apt
NGINX_TARBALL := $(CHAT_CACHE)/nginx-1.22-orig.tar.gz
DEBSRC_FILE   := /etc/apt/sources.list.d/ngx-chat-src.sources

NGX_SRC    := $(BUILD)/nginx-src
NGX_PREFIX := $(CURDIR)/$(BUILD)/nginx
NGX_BIN    := $(NGX_PREFIX)/sbin/nginx
# NGX_DEBUG_PALLOC: every pool allocation is a malloc() of its own, so
# that ASan sees overflows and uses after free inside pools
# dav: the PUT of attachments' files (ngx_chat_media.c)
NGX_OPTS   := --with-http_ssl_module --with-http_dav_module --with-threads \
              $(if $(SAN),--with-cc-opt='$(SAN) -DNGX_DEBUG_PALLOC=1' \
                          --with-ld-opt='$(SAN)')
NGX_CONF_ARGS := --prefix=$(NGX_PREFIX) $(NGX_OPTS) --add-module=$(CURDIR)

DYN          := $(BUILD)/dyn
DYN_SRC      := $(DYN)/nginx-src
DYN_PREFIX   := $(CURDIR)/$(DYN)/nginx
DYN_CONF_ARGS := --prefix=$(DYN_PREFIX) $(NGX_OPTS) \
                 --add-dynamic-module=$(CURDIR)

# ------------------------------------------------------------- Kafka jars

KAFKA_POM   := t/kafka/pom.xml
KAFKA_LIB   := $(CHAT_CACHE)/kafka-lib
KAFKA_STAMP := $(KAFKA_LIB)/.pom.sha256
MVN_DEP_PLUGIN := org.apache.maven.plugins:maven-dependency-plugin:3.6.1

# ---------------------------------------------------------------- workers

# the wire contract is the module's and the workers' alike
WIRE_SRC     := ngx_chat_module/ngx_chat_wire.c
# chat_pusher's own files (workers/pusher.h) are not chat_worker's, nor
# chatctl's (workers/chatctl.h)
PUSHER_MAIN  := workers/chat_pusher.c $(wildcard workers/pusher_*.c)
WORKER_SRCS  := $(filter-out workers/chatctl%.c $(PUSHER_MAIN),\
                             $(wildcard workers/*.c))
WORKER_OBJS  := $(patsubst workers/%.c,$(BUILD)/obj/workers/%.o,$(WORKER_SRCS)) \
                $(BUILD)/obj/workers/ngx_chat_wire.o \
                $(BUILD)/obj/workers/ngx_chat_media_sign.o \
                $(BUILD)/obj/gen/worker_lua.o
# the workers' Redis scripts, as C strings (workers/worker_lua.h)
WORKER_LUA   := $(wildcard workers/lua/*.lua)
WORKER_LUA_C := $(BUILD)/gen/worker_lua.c
WORKER_LIBS  := -lrdkafka -lpq -lhiredis -ljansson -lcrypto -lpthread \
                -lGraphicsMagick
# chatctl: its main and one file per command group (workers/chatctl.h)
CHATCTL_SRCS ?= $(wildcard workers/chatctl*.c)
# the module's token signing, shared with nginx's check and chat_bench
CHATCTL_OBJS := $(patsubst workers/%.c,$(BUILD)/obj/chatctl/%.o,$(CHATCTL_SRCS)) \
                $(BUILD)/obj/chatctl/ngx_chat_jwt.o \
                $(BUILD)/obj/workers/ngx_chat_wire.o
CHATCTL_LIBS := -lrdkafka -lpq -lhiredis -ljansson -lcrypto

# chat_pusher: its files, and chat_worker's consumer, PostgreSQL plumbing,
# Redis connections, metrics endpoint, group lag and tools
PUSHER_OBJS := $(patsubst workers/%.c,$(BUILD)/obj/workers/%.o,\
                 $(wildcard $(PUSHER_MAIN)) workers/worker_kafka.c \
                 workers/worker_topic.c workers/worker_pg.c \
                 workers/worker_httpd.c workers/worker_lag.c \
                 workers/worker_redis_link.c workers/worker_util.c) \
               $(BUILD)/obj/workers/ngx_chat_wire.o
# libcrypto: worker_redis_link.c names Redis scripts by their SHA1
PUSHER_LIBS := -lrdkafka -lpq -lhiredis -ljansson -lcurl -lcrypto -lpthread

WORKER_BINS := $(if $(WORKER_SRCS),$(BUILD)/bin/chat_worker) \
               $(if $(wildcard workers/chat_pusher.c),$(BUILD)/bin/chat_pusher) \
               $(if $(CHATCTL_SRCS),$(BUILD)/bin/chatctl)

# ------------------------------------------------------------- unit tests

UNIT_SRCS := $(wildcard t/unit/test_*.c)
UNIT_BINS := $(patsubst t/unit/%.c,$(BUILD)/unit/%,$(UNIT_SRCS))
# the module's pure C parts (no nginx headers), whichever exist yet
UNIT_MOD_SRCS := $(wildcard ngx_chat_module/ngx_chat_frame.c \
                            ngx_chat_module/ngx_chat_wire.c \
                            ngx_chat_module/ngx_chat_chain.c \
                            ngx_chat_module/ngx_chat_deflate.c \
                            ngx_chat_module/ngx_chat_jwt.c \
                            ngx_chat_module/ngx_chat_media_sign.c \
                            ngx_chat_module/ngx_chat_proto.c \
                            ngx_chat_module/ngx_chat_send.c)
UNIT_LIBS := -ljansson -lcrypto -lz

.PHONY: all deps pkgs nginx-source kafka-jars build nginx workers unit \
        calls test run dynamic install bench bench-deflate \
        bench-deflate-wire leak clean FORCE

all: build

# ====================================================================== deps

deps: pkgs nginx-source kafka-jars

# Fast when everything is there: one dpkg-query per package, no apt-get.
pkgs:
	@missing=""; need_java=""; \
	for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${db:Status-Abbrev}' "$$p" 2>/dev/null \
	        | grep -q '^ii' || missing="$$missing $$p"; \
	done; \
	command -v java >/dev/null 2>&1 || need_java=1; \
	if ! python3 -m pytest --version >/dev/null 2>&1 \
	   && ! /usr/bin/python3 -m pytest --version >/dev/null 2>&1; then \
	    missing="$$missing python3-pytest"; \
	fi; \
	if [ -z "$$missing$$need_java" ]; then \
	    echo "deps: Debian packages present"; exit 0; \
	fi; \
	set -e; \
	$(APT) update -q; \
	if [ -n "$$need_java" ]; then \
	    if apt-cache show openjdk-17-jre-headless >/dev/null 2>&1; then \
	        missing="$$missing openjdk-17-jre-headless"; \
	    else \
	        missing="$$missing default-jre-headless"; \
	    fi; \
	fi; \
	echo "deps: installing$$missing"; \
	$(APT) install -y -q --no-install-recommends $$missing

# The nginx 1.22 orig tarball from Debian's source package (Debian's patches
# are not applied).  deb-src is enabled by a separate deb822 file made from
# debian.sources with Types: deb-src; the download is cached.
nginx-source: $(NGINX_TARBALL)

$(NGINX_TARBALL):
	@mkdir -p "$(NGINX_APT_DIR)"
	@set -e; cd "$(NGINX_APT_DIR)"; \
	if ! ls nginx_1.22.*.orig.tar.gz >/dev/null 2>&1; then \
	    if ! apt-cache showsrc nginx 2>/dev/null | grep -q '^Package: nginx'; then \
	        if ! grep -rqsE '^[[:space:]]*(Types:.*deb-src|deb-src[[:space:]])' \
	                /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	            if [ -f /etc/apt/sources.list.d/debian.sources ]; then \
	                echo "nginx-source: adding $(DEBSRC_FILE)"; \
	                sed -E 's/^Types:.*/Types: deb-src/' \
	                    /etc/apt/sources.list.d/debian.sources \
	                    > "$(DEBSRC_FILE)"; \
	            elif [ -f /etc/apt/sources.list ]; then \
	                echo "nginx-source: adding $(DEBSRC_FILE:.sources=.list)"; \
	                sed -n 's/^deb[[:space:]]/deb-src /p' /etc/apt/sources.list \
	                    > "$(DEBSRC_FILE:.sources=.list)"; \
	            else \
	                echo "nginx-source: no apt sources found" >&2; exit 1; \
	            fi; \
	        fi; \
	        $(APT) update -q; \
	    fi; \
	    $(APT) source --download-only 'nginx=$(NGINX_DEB_VERSION)' \
	    || { echo "nginx-source: $(NGINX_DEB_VERSION) unavailable, taking the current one"; \
	         $(APT) source --download-only nginx; }; \
	fi; \
	f=$$(ls nginx_1.22.*.orig.tar.gz | sort -V | tail -n 1); \
	[ -n "$$f" ] || { echo "nginx-source: no nginx 1.22 orig tarball" >&2; exit 1; }; \
	echo "nginx-source: $(NGINX_APT_DIR)/$$f"; \
	cp "$$f" "$@.tmp" && mv "$@.tmp" "$@"

# Runtime jars of kafka_2.13 (see t/kafka/pom.xml); refetched only when the
# pom changes (compared by content, so a fresh clone reuses the cache).
kafka-jars:
	@sum=$$(sha256sum $(KAFKA_POM) | cut -d' ' -f1); \
	if [ "$$(cat "$(KAFKA_STAMP)" 2>/dev/null)" = "$$sum" ]; then \
	    echo "kafka-jars: cached in $(KAFKA_LIB)"; exit 0; \
	fi; \
	set -e; mkdir -p "$(CHAT_CACHE)"; rm -rf "$(KAFKA_LIB).tmp"; \
	echo "kafka-jars: fetching into $(KAFKA_LIB)"; \
	mvn -B -q -Dstyle.color=never -f $(KAFKA_POM) $(MVN_DEP_PLUGIN):copy-dependencies \
	    -DoutputDirectory="$(KAFKA_LIB).tmp" -DincludeScope=runtime; \
	ls "$(KAFKA_LIB).tmp"/kafka_2.13-*.jar >/dev/null; \
	echo "$$sum" > "$(KAFKA_LIB).tmp/.pom.sha256"; \
	rm -rf "$(KAFKA_LIB)"; mv "$(KAFKA_LIB).tmp" "$(KAFKA_LIB)"; \
	echo "kafka-jars: $$(ls "$(KAFKA_LIB)" | wc -l) jars"

# ===================================================================== build

build: pkgs nginx workers

# A stamp whose content is the configure line: rewritten (and so newer than
# objs/Makefile) only when the line changes.
$(BUILD)/.nginx-args: FORCE
	@mkdir -p $(@D)
	@echo "$(NGX_CONF_ARGS)" | cmp -s - $@ || echo "$(NGX_CONF_ARGS)" > $@

$(BUILD)/.dyn-args: FORCE
	@mkdir -p $(@D)
	@echo "$(DYN_CONF_ARGS)" | cmp -s - $@ || echo "$(DYN_CONF_ARGS)" > $@

%/nginx-src/.unpacked: $(NGINX_TARBALL)
	rm -rf $*/nginx-src
	mkdir -p $*/nginx-src
	tar -xzf $(NGINX_TARBALL) -C $*/nginx-src --strip-components=1
	touch $@

check-config = @test -f config || { \
	echo "build: ./config (the module's nginx build script) is missing" >&2; \
	exit 1; }

# configure also turns the module's Lua scripts into C
NGX_LUA := $(wildcard ngx_chat_module/lua/*.lua ngx_chat_module/lua/embed.sh)

$(NGX_SRC)/objs/Makefile: $(NGX_SRC)/.unpacked $(wildcard config) \
                          $(BUILD)/.nginx-args $(NGX_LUA)
	$(check-config)
	cd $(NGX_SRC) && ./configure $(NGX_CONF_ARGS)

$(DYN_SRC)/objs/Makefile: $(DYN_SRC)/.unpacked $(wildcard config) \
                          $(BUILD)/.dyn-args $(NGX_LUA)
	$(check-config)
	cd $(DYN_SRC) && ./configure $(DYN_CONF_ARGS)

# nginx's objs/Makefile knows the dependencies: always run it.
nginx: $(NGX_SRC)/objs/Makefile
	$(MAKE) -C $(NGX_SRC) -f objs/Makefile -j$(NGX_JOBS)
	@if [ ! -x $(NGX_BIN) ] || [ $(NGX_SRC)/objs/nginx -nt $(NGX_BIN) ]; then \
	    $(MAKE) -C $(NGX_SRC) -f objs/Makefile install >/dev/null && \
	    echo "nginx: installed $(NGX_BIN)"; \
	fi

workers: $(WORKER_BINS)
	@[ -n "$(WORKER_SRCS)" ] || echo "workers: no workers/*.c yet, chat_worker skipped"
	@[ -n "$(CHATCTL_SRCS)" ] || echo "workers: no workers/chatctl.c yet, chatctl skipped"

$(BUILD)/obj/workers/%.o: workers/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_CHAT) -MMD -MP -c $< -o $@

$(BUILD)/obj/workers/ngx_chat_wire.o: $(WIRE_SRC)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_CHAT) -MMD -MP -c $< -o $@

# image attachments: GraphicsMagick's headers live in their own directory
$(BUILD)/obj/workers/worker_thumb.o: CFLAGS_CHAT += -I/usr/include/GraphicsMagick

# the signature of media URLs is the module's too
$(BUILD)/obj/workers/ngx_chat_media_sign.o: ngx_chat_module/ngx_chat_media_sign.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_CHAT) -MMD -MP -c $< -o $@

$(WORKER_LUA_C): $(WORKER_LUA) ngx_chat_module/lua/embed.sh
	@mkdir -p $(@D)
	sh ngx_chat_module/lua/embed.sh chat_lua $@ $(WORKER_LUA)

# the header is included, so that the compiler checks it against the strings
$(BUILD)/obj/gen/worker_lua.o: $(WORKER_LUA_C) workers/worker_lua.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_CHAT) -include workers/worker_lua.h -c $< -o $@

$(BUILD)/bin/chat_worker: $(WORKER_OBJS)
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(WORKER_LIBS)

$(BUILD)/bin/chat_pusher: $(PUSHER_OBJS)
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(PUSHER_LIBS)

$(BUILD)/obj/chatctl/%.o: workers/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_CHAT) -MMD -MP -c $< -o $@

$(BUILD)/obj/chatctl/ngx_chat_jwt.o: ngx_chat_module/ngx_chat_jwt.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_CHAT) -MMD -MP -c $< -o $@

$(BUILD)/bin/chatctl: $(CHATCTL_OBJS)
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(CHATCTL_LIBS)

-include $(WORKER_OBJS:.o=.d) $(PUSHER_OBJS:.o=.d) $(CHATCTL_OBJS:.o=.d)

# ====================================================================== unit

# Each t/unit/test_X.c is a program linked with the module's pure sources;
# it prints "N passed, N failed" and exits non-zero on failure.
$(BUILD)/unit/%: t/unit/%.c $(UNIT_MOD_SRCS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_CHAT) -Ingx_chat_module -It/unit -MMD -MP -MF $@.d \
	    -o $@ $< $(UNIT_MOD_SRCS) $(UNIT_LIBS)

# the worker's tests include its PostgreSQL plumbing (array parameters)
# and its Redis connections (the --redis address)
$(BUILD)/unit/test_worker_%: UNIT_LIBS += -lpq -lhiredis

# the tests that include the worker's sources depend on all of them: the
# .d above is written by the last file of the command, not by the test
$(filter $(BUILD)/unit/test_worker_% $(BUILD)/unit/test_wire,$(UNIT_BINS)): \
    $(wildcard workers/*.c workers/*.h t/unit/*.h)

-include $(UNIT_BINS:=.d)

unit: $(UNIT_BINS)
	@if [ -z "$(UNIT_BINS)" ]; then \
	    echo "unit: no t/unit/test_*.c yet, skipped"; exit 0; \
	fi; \
	failed=""; \
	for t in $(UNIT_BINS); do \
	    echo "== $$t"; \
	    $$t || failed="$$failed $${t##*/}"; \
	done; \
	if [ -n "$$failed" ]; then echo "unit: FAILED:$$failed"; exit 1; fi; \
	echo "unit: all $(words $(UNIT_BINS)) programs passed"

# ================================================================ test, run

# the calls between the module's files, from its objects (globbed when
# the recipe runs, after the build), and between chat_worker's: no circles
calls: build
	@python3 t/calls.py module $(NGX_SRC)/objs/addon/ngx_chat_module/*.o \
	    $(NGX_SRC)/objs/addon/objs/ngx_chat_lua.o
	@python3 t/calls.py workers $(WORKER_OBJS)
	@python3 t/calls.py pusher $(PUSHER_OBJS)
	@python3 t/calls.py chatctl $(CHATCTL_OBJS)

# the JavaScript client's unit tests: node's own runner, nothing to install
.PHONY: test-js
test-js:
	@command -v node >/dev/null 2>&1 || { $(APT) update -q && \
	    $(APT) install -y -q --no-install-recommends nodejs; }
	node --test clients/js/test/

test: deps build unit calls test-js
	@py=python3; \
	$$py -m pytest --version >/dev/null 2>&1 || py=/usr/bin/python3; \
	set +e; $$py -m pytest -v t/; rc=$$?; set -e; \
	if [ $$rc -eq 5 ]; then \
	    echo "test: pytest collected no integration tests"; rc=0; \
	fi; \
	exit $$rc

run: deps build
	t/stack.sh run var

# ================================================================== install
#
# make install [PREFIX=/usr/local/ngx_chat] [DESTDIR=...] [SYSCONFDIR=...]
# [SYSTEMDDIR=...]: an nginx configured with --prefix=$(PREFIX) and the
# module (built apart from the tests' one, in $(BUILD)/install), into
# $(PREFIX)/sbin; chat_worker and chatctl into $(PREFIX)/bin; sql/ and the
# web client (clients/) into $(PREFIX)/share/ngx_chat; the example
# nginx.conf as $(PREFIX)/conf/nginx.conf and chat_worker.env in
# $(SYSCONFDIR), each only when there is none; the systemd units, filled
# from conf/systemd/*.in, into $(SYSTEMDDIR). DESTDIR prefixes every path
# written, as packagers expect, and none that is compiled in.

PREFIX     ?= /usr/local/ngx_chat
DESTDIR    ?=
BINDIR     := $(PREFIX)/bin
SBINDIR    := $(PREFIX)/sbin
DATADIR    := $(PREFIX)/share/ngx_chat
SYSCONFDIR ?= $(PREFIX)/etc
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system

INST_DIR       := $(BUILD)/install
INST_SRC       := $(INST_DIR)/nginx-src
INST_CONF_ARGS := --prefix=$(PREFIX) $(NGX_OPTS) --add-module=$(CURDIR)

$(INST_DIR)/.nginx-args: FORCE
	@mkdir -p $(@D)
	@echo "$(INST_CONF_ARGS)" | cmp -s - $@ || echo "$(INST_CONF_ARGS)" > $@

$(INST_SRC)/objs/Makefile: $(INST_SRC)/.unpacked $(wildcard config) \
                           $(INST_DIR)/.nginx-args $(NGX_LUA)
	$(check-config)
	cd $(INST_SRC) && ./configure $(INST_CONF_ARGS)

install: pkgs workers $(INST_SRC)/objs/Makefile
	$(MAKE) -C $(INST_SRC) -f objs/Makefile -j$(NGX_JOBS)
	@set -e; d='$(DESTDIR)'; \
	install -d "$$d$(PREFIX)/conf" "$$d$(BINDIR)" "$$d$(DATADIR)" \
	    "$$d$(SYSCONFDIR)" "$$d$(SYSTEMDDIR)"; \
	if [ ! -e "$$d$(PREFIX)/conf/nginx.conf" ]; then \
	    install -m 644 conf/nginx.conf.example "$$d$(PREFIX)/conf/nginx.conf"; \
	    echo "install: $(PREFIX)/conf/nginx.conf from conf/nginx.conf.example"; \
	fi
	$(MAKE) -C $(INST_SRC) -f objs/Makefile install DESTDIR='$(DESTDIR)' >/dev/null
	@set -e; d='$(DESTDIR)'; \
	install -m 755 $(BUILD)/bin/chat_worker $(BUILD)/bin/chat_pusher \
	    $(BUILD)/bin/chatctl "$$d$(BINDIR)/"; \
	rm -rf "$$d$(DATADIR)/sql" "$$d$(DATADIR)/clients"; \
	install -d "$$d$(DATADIR)/sql"; \
	install -m 644 sql/[0-9]*_*.sql "$$d$(DATADIR)/sql/"; \
	cp -R clients "$$d$(DATADIR)/clients"; \
	rm -rf "$$d$(DATADIR)/clients/js/test"; \
	install -m 644 conf/chat_worker.env.example "$$d$(SYSCONFDIR)/"; \
	if [ ! -e "$$d$(SYSCONFDIR)/chat_worker.env" ]; then \
	    install -m 640 conf/chat_worker.env.example "$$d$(SYSCONFDIR)/chat_worker.env"; \
	fi; \
	for t in conf/systemd/*.in; do \
	    u=$${t##*/}; u=$${u%.in}; \
	    sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@BINDIR@|$(BINDIR)|g' \
	        -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	        -e 's|@DATADIR@|$(DATADIR)|g' "$$t" > "$$d$(SYSTEMDDIR)/$$u.tmp"; \
	    if grep -q '@[A-Z_]*@' "$$d$(SYSTEMDDIR)/$$u.tmp"; then \
	        echo "install: $$t: a placeholder left unfilled" >&2; exit 1; \
	    fi; \
	    chmod 644 "$$d$(SYSTEMDDIR)/$$u.tmp"; \
	    mv "$$d$(SYSTEMDDIR)/$$u.tmp" "$$d$(SYSTEMDDIR)/$$u"; \
	done; \
	echo "install: ngx_chat in $$d$(PREFIX) (units in $$d$(SYSTEMDDIR))"

# ================================================================== dynamic

# CI's check that `config` works for --add-dynamic-module too: build it,
# install it, and have `nginx -t` load the module and parse its directives.
dynamic: pkgs $(DYN_SRC)/objs/Makefile
	$(MAKE) -C $(DYN_SRC) -f objs/Makefile -j$(NGX_JOBS)
	$(MAKE) -C $(DYN_SRC) -f objs/Makefile install >/dev/null
	@set -e; \
	mods=$$(cd $(DYN_PREFIX) && ls modules/*.so 2>/dev/null || true); \
	[ -n "$$mods" ] || { echo "dynamic: no module .so was built" >&2; exit 1; }; \
	conf=$(DYN_PREFIX)/conf/dynamic-check.conf; \
	{ for m in $$mods; do echo "load_module $$m;"; done; \
	  echo "events { worker_connections 64; }"; \
	  echo "http {"; \
	  echo "    chat_jwt_secret 0123456789abcdef0123456789abcdef;"; \
	  echo "    chat_server_id dyncheck;"; \
	  echo "    server {"; \
	  echo "        listen 127.0.0.1:8080;"; \
	  echo "        location = /chat { chat; }"; \
	  echo "    }"; \
	  echo "}"; } > $$conf; \
	$(DYN_PREFIX)/sbin/nginx -t -p $(DYN_PREFIX)/ -c $$conf -e stderr; \
	echo "dynamic: $$mods loads and configures"

# ===================================================================== bench
#
# make bench [BENCH_QUICK=1] [BENCH_URL=ws://127.0.0.1:PORT/chat BENCH_SECRET=S]
# runs t/bench/run.sh: the chat_bench scenarios (idle, dm, group, storm)
# against the stack of `make run` if it runs, else against a stack of its
# own on spare ports; prints a table, writes $(BUILD)/bench/bench.json.
# BENCH_QUICK=1 is the CI size (well under a minute of load).

BENCH_QUICK ?= 0
BENCH_BIN   := $(BUILD)/bin/chat_bench
# its files by concern (t/bench/bench.h), and the module's token signing
BENCH_SRCS  := t/bench/chat_bench.c $(wildcard t/bench/bench_*.c) \
               ngx_chat_module/ngx_chat_jwt.c ngx_chat_module/ngx_chat_wire.c
BENCH_HDRS  := t/bench/bench.h ngx_chat_module/ngx_chat_jwt.h \
               ngx_chat_module/ngx_chat_wire.h

$(BENCH_BIN): $(BENCH_SRCS) $(BENCH_HDRS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_CHAT) -o $@ $(BENCH_SRCS) -ljansson -lcrypto -lz

# the shared driver's sweeps against ngx_chat and then Centrifugo, in one
# run, side by side with ratios (t/bench/compare.sh; SCENARIOS=dm|fanout|
# idle, and the driver's settings from the environment)
.PHONY: bench-compare
bench-compare: deps build
	t/bench/compare.sh $(or $(SCENARIOS),all)

bench: deps build $(BENCH_BIN)
	BENCH_BIN=$(CURDIR)/$(BENCH_BIN) BENCH_QUICK=$(BENCH_QUICK) t/bench/run.sh

# make bench-deflate [DEFLATE_BENCH_ITERS=20000]: t/bench/deflate_bench.c,
# no servers: permessage-deflate's bytes before and after on typical
# frames, and its CPU per frame (best of 5 rounds of ITERS calls).

DEFLATE_BENCH_ITERS ?= 20000
DEFLATE_BENCH_BIN  := $(BUILD)/bin/deflate_bench
DEFLATE_BENCH_SRCS := t/bench/deflate_bench.c \
                      ngx_chat_module/ngx_chat_deflate.c \
                      ngx_chat_module/ngx_chat_frame.c

$(DEFLATE_BENCH_BIN): $(DEFLATE_BENCH_SRCS) ngx_chat_module/ngx_chat_deflate.h \
                      ngx_chat_module/ngx_chat_frame.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_CHAT) -o $@ $(DEFLATE_BENCH_SRCS) -lz

bench-deflate: $(DEFLATE_BENCH_BIN)
	$(DEFLATE_BENCH_BIN) $(DEFLATE_BENCH_ITERS)

# make bench-deflate-wire [WIRE_STACK=DIR] [WIRE_ARGS="--body 100"]:
# t/bench/deflate_wire.py, bytes on the wire per message frame on /chat and
# on /chat-z (permessage-deflate), against DIR or a stack of its own.
# make bench BENCH_DEFLATE=1 runs the chat_bench scenarios compressed.

bench-deflate-wire: deps build
	python3 t/bench/deflate_wire.py $(WIRE_ARGS) $(WIRE_STACK)

# make bench-typing [FRAMES=2000 RATE=150 MEMBERS=10]: t/bench/typing_bench.py,
# typing by nginx's Redis script against typing through Kafka and a worker
# (the fallback), on a stack of its own: Kafka records per frame, latency,
# CPU of nginx, chat_worker and the broker, Redis's time in the script.

.PHONY: bench-typing
bench-typing: deps build
	python3 t/bench/typing_bench.py

# ====================================================================== fuzz
#
# make fuzz [FUZZ_SECONDS=30] [FUZZ_TARGETS="fuzz_frame ..."]
# builds the libFuzzer targets t/fuzz/fuzz_*.c with clang (installed when
# missing) against the module's pure C parts, then runs each for
# FUZZ_SECONDS on a scratch copy of t/fuzz/corpus/<target>/ (the repo is
# not modified), with t/fuzz/<target>.dict when there is one.  Prints
# executions and coverage per target; fails on a crash, leaving the input
# in $(FUZZ_DIR)/artifacts/ (replay it with `$(FUZZ_DIR)/<target> <file>`).
# Always in build/fuzz: libFuzzer's instrumentation has nothing to do with
# SANITIZE.  See t/fuzz/README.md.

FUZZ_SECONDS ?= 30
FUZZ_CC      ?= clang
FUZZ_DIR     := build/fuzz
FUZZ_SRCS    := $(wildcard t/fuzz/fuzz_*.c)
FUZZ_TARGETS ?= $(patsubst t/fuzz/%.c,%,$(FUZZ_SRCS))
FUZZ_BINS    := $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=all -std=gnu11 -Wall -Wextra \
                -Ingx_chat_module
FUZZ_LIBS    := -ljansson -lcrypto -lz

.PHONY: fuzz fuzz-build fuzz-pkgs

# clang and its runtime libraries (libFuzzer, the sanitizers: Debian puts
# them in libclang-rt-N-dev, which --no-install-recommends leaves out); the
# rest (jansson, OpenSSL, zlib) comes with `pkgs`
FUZZ_RT_PKG  := libclang-rt-14-dev
fuzz-pkgs: pkgs
	@if command -v $(FUZZ_CC) >/dev/null 2>&1 \
	   && dpkg-query -W -f='$${db:Status-Abbrev}' $(FUZZ_RT_PKG) 2>/dev/null \
	      | grep -q '^ii'; then \
	    exit 0; \
	fi; \
	set -e; echo "fuzz: installing clang and $(FUZZ_RT_PKG)"; \
	$(APT) update -q; \
	$(APT) install -y -q --no-install-recommends clang $(FUZZ_RT_PKG)

$(FUZZ_DIR)/%: t/fuzz/%.c $(UNIT_MOD_SRCS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -MF $@.d -o $@ $< \
	    $(UNIT_MOD_SRCS) $(FUZZ_LIBS)

-include $(FUZZ_BINS:=.d)

# (.NOTPARALLEL: clang is there before the first target is built)
fuzz-build: fuzz-pkgs $(FUZZ_BINS)

fuzz: fuzz-build
	@set -u; failed=""; summary=""; \
	work=$$(mktemp -d "$${TMPDIR:-/tmp}/ngx-chat-fuzz.XXXXXX"); \
	trap 'rm -rf "$$work"' EXIT; \
	mkdir -p $(FUZZ_DIR)/artifacts; \
	for t in $(FUZZ_TARGETS); do \
	    mkdir -p "$$work/$$t"; \
	    if [ -d t/fuzz/corpus/$$t ]; then \
	        cp -R t/fuzz/corpus/$$t/. "$$work/$$t/"; \
	    fi; \
	    echo "== $$t: $(FUZZ_SECONDS) s"; \
	    $(FUZZ_DIR)/$$t -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	        -rss_limit_mb=2048 -print_final_stats=1 \
	        $$([ -f t/fuzz/$$t.dict ] && echo -dict=t/fuzz/$$t.dict) \
	        -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t- \
	        "$$work/$$t" > "$$work/$$t.log" 2>&1; \
	    rc=$$?; \
	    done_line=$$(grep -E '^#[0-9]+[[:space:]]+DONE ' "$$work/$$t.log" \
	                 | tail -n 1); \
	    if [ $$rc -ne 0 ]; then \
	        tail -n 60 "$$work/$$t.log"; \
	        failed="$$failed $$t"; \
	        summary="$$summary$$t: FAILED (exit $$rc)\n"; \
	    else \
	        execs=$$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' \
	                 "$$work/$$t.log"); \
	        echo "$$done_line"; \
	        summary="$$summary$$t: $$execs execs; $$done_line\n"; \
	    fi; \
	done; \
	echo "== fuzz summary ($(FUZZ_SECONDS) s each)"; \
	printf '%b' "$$summary"; \
	if [ -n "$$failed" ]; then \
	    echo "fuzz: FAILED:$$failed (inputs in $(FUZZ_DIR)/artifacts/)"; \
	    exit 1; \
	fi

# ====================================================================== leak
#
# make leak [LEAK_STACK=DIR] [LEAK_ARGS="--cycles 20000 --ping-only"]
# t/bench/leak_check.py: nginx worker VmRSS/Pss over 100,000 connect / send /
# close cycles, against DIR/stack.env or a stack of its own on spare ports.

leak: deps build
	python3 t/bench/leak_check.py $(LEAK_STACK) $(LEAK_ARGS)

# ==================================================================== clean

clean:
	rm -rf build build-san

FORCE:
