#!/bin/sh

# Instructions per request of the gateway worker, under callgrind: the
# bench's 1 KB chat request (bench/run.pl's B: conf/tailgate/locations.conf,
# the provider of bench/provider.conf, answering a fixed completion with
# its usage) through one nginx process (master_process off) that valgrind
# runs.  Counters are zeroed after a warm-up, so neither machine load nor
# startup moves the figure.
#
#   bench/callgrind.sh [REQUESTS]      (4000; make all first)
#
# Prints Ir per request in total and for the functions of the usage
# reader, the meter and the REPORT; the whole profile stays in
# build/callgrind/callgrind.out.run (callgrind_annotate reads it).
# TAILGATE_TREE=DIR measures another checkout the same way: its
# build/ngx_tailgate_module.so, build/policyd and conf/tailgate (a
# change's before and after).  TAILGATE_MODULE, TAILGATE_POLICYD,
# TAILGATE_NGINX, CALLGRIND_DIR (build/callgrind) and CALLGRIND_PORT
# (19201: it and the next one) choose other builds, places and ports.
# CALLGRIND_BARE=1 measures bench/run.pl's A instead: the same nginx, the
# module loaded, a plain proxy_pass location with the same buffers and
# upstream keepalive (what the module's share is counted against).

set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TREE=$(cd "${TAILGATE_TREE:-$ROOT}" && pwd)
DIR=${CALLGRIND_DIR:-$ROOT/build/callgrind}
N=${1:-4000}
NGINX=${TAILGATE_NGINX:-/usr/sbin/nginx}
MODULE=${TAILGATE_MODULE:-$TREE/build/ngx_tailgate_module.so}
POLICYD=${TAILGATE_POLICYD:-$TREE/build/policyd}
PORT=${CALLGRIND_PORT:-19201}
PROV=$((PORT + 1))
BARE=${CALLGRIND_BARE:-0}
KEY=tg-callgrind-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

for tool in valgrind callgrind_control curl "$NGINX" "$POLICYD"; do
    command -v "$tool" >/dev/null || { echo "no $tool" >&2; exit 1; }
done

pids=
stop() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    for p in $pids; do wait "$p" 2>/dev/null || true; done
}
trap stop EXIT INT TERM

rm -rf "$DIR"
mkdir -p "$DIR/gw" "$DIR/prov"
ln -s "$TREE/conf/tailgate" "$DIR/gw/tailgate"

printf '%s bench\n' "$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)" \
    > "$DIR/keys"

cat > "$DIR/policy.json" <<EOF
{"decision_cache_ms": 1000,
 "providers": {"fake": {"upstream": "tg_fake", "zone": "local",
                        "endpoints": ["chat"]}},
 "routes": {"bench": {"steps": [{"provider": "fake",
                                 "model": "bench-provider-model"}]}}}
EOF
chmod 600 "$DIR/policy.json" "$DIR/keys"

# bench/run.pl's provider
user=
[ "$(id -u)" -ne 0 ] || user='user root;'
sed -e "s|@DIR@|$DIR/prov|g" -e "s|@PORT@|$PROV|g" -e "s|@USER@|$user|" \
    "$ROOT/bench/provider.conf" > "$DIR/prov/nginx.conf"

cat > "$DIR/gw/nginx.conf" <<EOF
load_module $MODULE;
master_process off;
daemon off;
pid $DIR/gw/nginx.pid;
error_log $DIR/gw/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $DIR/gw/body;
    proxy_temp_path $DIR/gw/proxy;

    tailgate_policyd unix:$DIR/policyd.sock;
    tailgate_keys $DIR/keys;

    upstream tg_fake {
        server 127.0.0.1:$PROV;
        keepalive 16;
    }

    tailgate_private_upstream tg_fake;

    server {
        listen 127.0.0.1:$PORT;
        keepalive_requests 1000000;
        include $DIR/gw/server.conf;
    }
}
EOF

if [ "$BARE" = 1 ]; then
    # bench/run.pl's A: its location, without the module's directives
    cat > "$DIR/gw/server.conf" <<EOF
location /v1/ {
    include $ROOT/bench/bare.conf;
    proxy_pass http://tg_fake;
}
EOF
else
    echo 'include tailgate/locations.conf;' > "$DIR/gw/server.conf"
fi

fill=$(head -c 944 /dev/zero | tr '\0' x)
printf '{"model":"bench","messages":[{"role":"user","content":"%s"}]}' \
    "$fill" > "$DIR/body.json"

"$NGINX" -p "$DIR/prov/" -c "$DIR/prov/nginx.conf" \
    > "$DIR/prov/out.log" 2>&1 &
pids="$pids $!"

"$POLICYD" -c "$DIR/policy.json" -s "$DIR/policyd.sock" \
    > "$DIR/policyd.log" 2>&1 &
pids="$pids $!"

i=0
until [ -S "$DIR/policyd.sock" ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "policyd does not start" >&2; exit 1; }
    sleep 0.1
done

valgrind --tool=callgrind --dump-instr=no \
    --callgrind-out-file="$DIR/callgrind.out" \
    "$NGINX" -p "$DIR/gw/" -c "$DIR/gw/nginx.conf" \
    > "$DIR/gw/out.log" 2>&1 &
vg=$!
pids="$pids $vg"

i=0
until curl -s -o /dev/null -H "Authorization: Bearer $KEY" \
          --data-binary @"$DIR/body.json" \
          "http://127.0.0.1:$PORT/v1/chat/completions"
do
    i=$((i + 1))
    [ $i -lt 300 ] || { echo "the gateway does not answer" >&2; exit 1; }
    sleep 0.2
done

# one curl, one keep-alive connection, exactly this many requests
run() {
    i=0
    : > "$DIR/urls"
    while [ $i -lt "$1" ]; do
        printf 'url = "http://127.0.0.1:%s/v1/chat/completions"\n' "$PORT"
        printf 'output = "/dev/null"\n'
        i=$((i + 1))
    done > "$DIR/urls"
    curl -s -K "$DIR/urls" -w '%{http_code}\n' \
        -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
        --data-binary @"$DIR/body.json" > "$DIR/codes"
    [ "$(grep -c '^200$' "$DIR/codes")" -eq "$1" ] \
        || { echo "not all answers were 200" >&2; exit 1; }
}

run 500
callgrind_control -z "$vg" > /dev/null
run "$N"
callgrind_control -d "$vg" > /dev/null

# the dump after the zeroing is the numbered one
out=$(ls -t "$DIR"/callgrind.out.* | head -1)
cp "$out" "$DIR/callgrind.out.run"

# self cost by function, inlined parts added to the function they are in
callgrind_annotate --auto=no --inclusive=no --threshold=100 "$out" \
    2>/dev/null | awk -v n="$N" '
        /PROGRAM TOTALS/ { gsub(/,/, "", $1); total = $1; next }
        /%\)/ {
            v = $1; gsub(/,/, "", v)
            for (i = 2; i < NF && $i !~ /%\)$/; i++) { }
            name = $(i + 1); sub(/.*:/, "", name); sub(/\..*/, "", name)
            if (name ~ /^ngx_tailgate_(usage|meter|report|frame|request_id|id$)|siphash|hex_dump/)
                self[name] += v
        }
        END {
            printf "requests %d\ntotal %.0f Ir/request\n", n, total / n
            for (f in self) printf "  %-36s %6.0f\n", f, self[f] / n | "sort"
        }'

stop
trap - EXIT
