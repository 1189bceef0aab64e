#!/bin/bash
#
# The container's health check (docker/Dockerfile, docker/compose.yaml):
#
#   all       (the default) nginx answers GET /health with 200 and says
#             policyd is up: the gateway serves
#   nginx     nginx answers GET /health with 200 (policyd may be away:
#             requests then get 503, never an answer without a decision)
#   policyd   policyd answers "policyd status" on its admin socket
#
# Exit 0 when healthy, 1 otherwise, within TAILGATE_HEALTH_TIMEOUT seconds
# (3).  Plain bash: the runtime image has no HTTP client.
#
#   TAILGATE_HEALTH_ADDR  127.0.0.1:8080
#   TAILGATE_ADMIN_SOCK   /run/tailgate/policyd-admin.sock
#   TAILGATE_POLICYD      /usr/sbin/policyd

set -uo pipefail

mode=${1:-all}
addr=${TAILGATE_HEALTH_ADDR:-127.0.0.1:8080}
timeout=${TAILGATE_HEALTH_TIMEOUT:-3}
admin=${TAILGATE_ADMIN_SOCK:-/run/tailgate/policyd-admin.sock}
policyd=${TAILGATE_POLICYD:-/usr/sbin/policyd}

health() {
    local answer

    answer=$(timeout "$timeout" bash -c '
        exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
        printf "GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n" >&3
        cat <&3' health "$addr" 2>/dev/null) || return 1

    [[ $answer == "HTTP/1."[01]" 200 "* ]] || return 1

    if [ "$1" = all ]; then
        [[ $answer == *'"policyd":"up"'* ]] || return 1
    fi

    return 0
}

case "$mode" in
all|nginx)
    health "$mode" && exit 0
    ;;
policyd)
    timeout "$timeout" "$policyd" status -a "$admin" >/dev/null 2>&1 && exit 0
    ;;
*)
    echo "tailgate-healthcheck: all, nginx or policyd" >&2
    exit 2
    ;;
esac

exit 1
