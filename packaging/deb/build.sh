#!/bin/sh
#
# make deb: a Debian package laid out as Debian's own nginx module
# packages are (docs/operations.md, "The Debian package"):
#
#   /usr/lib/nginx/modules/ngx_http_tailgate_module.so
#   /usr/share/nginx/modules-available/mod-http-tailgate.conf
#   /usr/sbin/policyd, /usr/bin/tailgate-key
#   /lib/systemd/system/tailgate-policyd.service (+ nginx.service.d)
#   /etc/nginx/tailgate/, /etc/tailgate/ (conffiles), docs and examples
#
# and Depends on the nginx ABI the module was built against (nginx-dev's
# nginx:abi, e.g. nginx-abi-1.22.1-7), so that an nginx of another ABI
# cannot be installed with it.  dpkg-deb builds it from "make install
# DESTDIR=..."; dpkg-shlibdeps finds the libraries it needs.
#
#   sh packaging/deb/build.sh OUT_DIR MODULE POLICYD NGINX_SRC
#
# Prints the package's path last.

set -eu

out=$1
module=$2
policyd=$3
nginx_src=$4

pkg=libnginx-mod-http-tailgate
root=$(cd "$(dirname "$0")/../.." && pwd)
make=${MAKE:-make}

die() { echo "make deb: $*" >&2; exit 1; }

command -v dpkg-deb >/dev/null || die "no dpkg-deb (Debian's dpkg)"

abi_file=$nginx_src/debian/libnginx-mod.abisubstvars
[ -f "$abi_file" ] || die "$abi_file is not there: the nginx ABI is known" \
    "only when building against Debian's nginx-dev (NGINX_SRC=$nginx_src)"
abi=$(sed -n 's/^nginx:abi=//p' "$abi_file")
[ -n "$abi" ] || die "no nginx:abi= in $abi_file"

commits=$(git -C "$root" rev-list --count HEAD 2>/dev/null || echo 0)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
version=${DEB_VERSION:-0.1+git$commits-1}
arch=$(dpkg --print-architecture)
# the author of the commit it is built from, unless told otherwise
maintainer=${DEB_MAINTAINER:-$(git -C "$root" log -1 --format='%an <%ae>' \
                               2>/dev/null || true)}
[ -n "$maintainer" ] || die "no maintainer: set DEB_MAINTAINER='Name <mail>'"

umask 022
mkdir -p "$out"
work=$(cd "$out" && pwd)/deb-$$
stage=$work/root
rm -rf "$work"
mkdir -p "$stage"
trap 'rm -rf "$work"' EXIT

# the files, where Debian puts them

env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS \
"$make" --no-print-directory -s -C "$root" install NO_BUILD=1 SETUP=no \
    MODULE="$module" POLICYD="$policyd" DESTDIR="$stage" \
    PREFIX=/usr SYSCONFDIR=/etc UNITDIR=/lib/systemd/system \
    SYSUSERSDIR=/usr/lib/sysusers.d DOCDIR=/usr/share/doc/$pkg \
    >/dev/null

# the key file is data that tailgate-key writes, not configuration:
# postinst makes it from /usr/share/tailgate/keys, once
rm -f "$stage/etc/tailgate/keys"

strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$stage/usr/sbin/policyd" \
    "$stage/usr/lib/nginx/modules/ngx_http_tailgate_module.so"

# Debian's man pages are compressed
gzip -9n "$stage/usr/share/man/man1/tailgate-key.1" \
    "$stage/usr/share/man/man8/policyd.8"

# what lintian says that is meant so (docs/operations.md)
install -d -m 0755 "$stage/usr/share/lintian/overrides"
install -m 0644 "$root/packaging/deb/lintian-overrides" \
    "$stage/usr/share/lintian/overrides/$pkg"

doc=$stage/usr/share/doc/$pkg
install -m 0644 "$root/packaging/deb/copyright" "$doc/copyright"
{
    echo "$pkg ($version) unstable; urgency=medium"
    echo
    echo "  * Built from the Tailgate repository, commit $commit."
    echo
    echo " -- $maintainer  $(date -R)"
} | gzip -9n > "$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

# the control files

mkdir -p "$stage/DEBIAN" "$work/src/debian"

printf 'Source: tailgate\n\nPackage: %s\nArchitecture: any\n' "$pkg" \
    > "$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O --warnings=0 \
             "$stage/usr/sbin/policyd" \
             "$stage/usr/lib/nginx/modules/ngx_http_tailgate_module.so" \
         | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no libraries"

size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)

sed -e "s|@PACKAGE@|$pkg|" -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" \
    -e "s|@MAINTAINER@|$maintainer|" -e "s|@SIZE@|$size|" \
    -e "s|@NGINX_ABI@|$abi|" -e "s|@SHLIBS@|$shlibs|" \
    "$root/packaging/deb/control.in" > "$stage/DEBIAN/control"

(cd "$stage" && find etc -type f | sort | sed 's|^|/|') \
    > "$stage/DEBIAN/conffiles"

for s in postinst prerm postrm; do
    install -m 0755 "$root/packaging/deb/$s" "$stage/DEBIAN/$s"
done

(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -print \
     | sed 's|^\./||' | LC_ALL=C sort | xargs md5sum) > "$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" \
    "$stage/DEBIAN/md5sums"

deb=$(cd "$out" && pwd)/${pkg}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null

echo "$deb"
