#!/bin/sh
# Install what the project needs to build and to run its tests against a real containerd
# (Debian/Ubuntu). Idempotent: runs apt-get only when a package is missing.
set -eu

PACKAGES="containerd runc containernetworking-plugins busybox-static catatonit iptables iproute2 protobuf-compiler etcd-server docker-registry skopeo apache2-utils"

missing=""
for pkg in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $pkg"
	fi
done

if [ -z "$missing" ]; then
	echo "all packages present: $PACKAGES"
	exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "installing:$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
