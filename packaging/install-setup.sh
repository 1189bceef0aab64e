#!/bin/sh
#
# After "make install" as root (it runs this): the user policyd runs as,
# and the groups of the files it and nginx's workers read.  Files whose
# group is still root's get theirs; a group the operator chose is kept.
# Running it again changes nothing.
#
#   sh packaging/install-setup.sh [SYSCONFDIR]      (default /etc)

set -eu

etc=${1:-/etc}/tailgate
nginx_group=www-data

say() { echo "install-setup: $*"; }

if ! getent passwd tailgate >/dev/null; then
    if command -v adduser >/dev/null && adduser --help 2>&1 | grep -q -- --system; then
        adduser --system --group --home /var/lib/tailgate --no-create-home \
            --quiet tailgate
    else
        useradd --system --user-group --home-dir /var/lib/tailgate \
            --shell /usr/sbin/nologin tailgate
    fi
    say "created the user tailgate"
fi

if ! getent group "$nginx_group" >/dev/null; then
    say "no group $nginx_group: give the socket (listen.group) and" \
        "SupplementaryGroups= the group of nginx's workers"
    nginx_group=
fi

# group file mode: only a file whose group is still root's
give() {
    if [ -e "$2" ] && [ "$(stat -c %g "$2")" = 0 ]; then
        chgrp "$1" "$2"
        chmod "$3" "$2"
        say "$2: group $1, mode $3"
    fi
}

chmod 0755 "$etc"
give tailgate "$etc/policy.json" 0640
[ -n "$nginx_group" ] && give "$nginx_group" "$etc/keys" 0640
[ "$(stat -c %g "$etc/policyd.env")" = 0 ] && chmod 0600 "$etc/policyd.env"

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    say "next: put the provider keys in $etc/policyd.env, then" \
        "systemctl enable --now tailgate-policyd"
fi
