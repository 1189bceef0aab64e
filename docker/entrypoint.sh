#!/bin/bash
#
# The container's entrypoint (docker/Dockerfile), as the container's user:
#
#   all       (the default) policyd, then nginx in the foreground, kept
#             together: SIGTERM or SIGINT stops both (exit 0), SIGHUP
#             reloads both (the policy, nginx's configuration and keys),
#             and when either exits on its own the other is stopped and
#             the container exits with 1, for its restart policy
#   policyd   policyd alone, as the process itself (docker/compose.yaml
#             runs nginx in another container, sharing /run/tailgate)
#   nginx     nginx alone, likewise
#
# Each checks its files first (policyd -t, nginx -t), so that a bad file
# stops here with its errors.
#
# The paths can be moved (the tests do):
#   TAILGATE_POLICY       /etc/tailgate/policy.json
#   TAILGATE_POLICYD_SOCK /run/tailgate/policyd.sock (as in tailgate/http.conf)
#   TAILGATE_NGINX_CONF   /etc/nginx/nginx.conf
#   TAILGATE_NGINX_TEMP   /tmp/nginx (nginx.conf's *_temp_path are in it)
#   TAILGATE_POLICYD      /usr/sbin/policyd
#   TAILGATE_NGINX        /usr/sbin/nginx
#   TAILGATE_NGINX_ARGS   more arguments for nginx (e.g. "-p /some/prefix/")

set -euo pipefail

policy=${TAILGATE_POLICY:-/etc/tailgate/policy.json}
sock=${TAILGATE_POLICYD_SOCK:-/run/tailgate/policyd.sock}
nginx_conf=${TAILGATE_NGINX_CONF:-/etc/nginx/nginx.conf}
nginx_temp=${TAILGATE_NGINX_TEMP:-/tmp/nginx}
policyd=${TAILGATE_POLICYD:-/usr/sbin/policyd}
nginx=${TAILGATE_NGINX:-/usr/sbin/nginx}
read -r -a nginx_args <<< "${TAILGATE_NGINX_ARGS:-}"
mode=${1:-all}

say() { echo "tailgate-entrypoint: $*" >&2; }

# nginx makes its temporary directories, but not the one they are in (a
# tmpfs on a read-only container is empty)
mkdir -p "$nginx_temp"

case "$mode" in
policyd)
    "$policyd" -t -c "$policy" -s "$sock" >/dev/null
    exec "$policyd" -c "$policy" -s "$sock"
    ;;
nginx)
    "$nginx" "${nginx_args[@]}" -t -q -c "$nginx_conf"
    exec "$nginx" "${nginx_args[@]}" -c "$nginx_conf" -g 'daemon off;'
    ;;
all)
    ;;
*)
    say "unknown command \"$mode\": all, policyd or nginx"
    exit 2
    ;;
esac

"$policyd" -t -c "$policy" -s "$sock" >/dev/null
"$nginx" "${nginx_args[@]}" -t -q -c "$nginx_conf"

"$policyd" -c "$policy" -s "$sock" &
policyd_pid=$!

# nginx's workers connect on their first request; still, start once the
# socket is there, so that the first requests do not fail
for _ in $(seq 100); do
    [ -S "$sock" ] && break
    kill -0 "$policyd_pid" 2>/dev/null || { say "policyd did not start"; exit 1; }
    sleep 0.1
done

[ -S "$sock" ] || { say "policyd did not listen on $sock"; kill "$policyd_pid"; exit 1; }

"$nginx" "${nginx_args[@]}" -c "$nginx_conf" -g 'daemon off;' &
nginx_pid=$!

stopping=0

stop() {
    stopping=1
    kill -TERM "$nginx_pid" "$policyd_pid" 2>/dev/null || true
}

trap stop TERM INT
trap 'kill -HUP "$policyd_pid" "$nginx_pid" 2>/dev/null || true' HUP

# a trapped signal interrupts wait; the first to exit takes the other down

while kill -0 "$nginx_pid" 2>/dev/null && kill -0 "$policyd_pid" 2>/dev/null
do
    wait -n "$nginx_pid" "$policyd_pid" || true
done

if [ "$stopping" = 0 ]; then
    if kill -0 "$nginx_pid" 2>/dev/null; then
        say "policyd exited; stopping nginx"
    else
        say "nginx exited; stopping policyd"
    fi
fi

kill -TERM "$nginx_pid" "$policyd_pid" 2>/dev/null || true
wait "$nginx_pid" 2>/dev/null || true
wait "$policyd_pid" 2>/dev/null || true

if [ "$stopping" = 1 ]; then
    say "stopped"
    exit 0
fi

exit 1
