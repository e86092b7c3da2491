#!/bin/sh
# Run a containerd of the kubelet's own, apart from any system containerd.
#   scripts/containerd.sh start DIR   start it in the background; socket DIR/containerd.sock
#   scripts/containerd.sh stop DIR    stop it and remove what it made
# The configuration is scripts/containerd-config.toml.in (shared with kubelet_cri::testing)
# and scripts/cni-conflist.json.in. Override with BRIDGE, SUBNET, CNI_BIN_DIR.
set -eu

SCRIPTS=$(cd "$(dirname "$0")" && pwd)
BRIDGE=${BRIDGE:-cni0}
SUBNET=${SUBNET:-10.88.0.0/16}
NETWORK=${NETWORK:-kubelet}
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}

usage() {
	echo "usage: $0 start|stop DIR" >&2
	exit 2
}
[ $# -eq 2 ] || usage
CMD=$1
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
SOCK=$DIR/containerd.sock
PIDFILE=$DIR/containerd.pid

cni_chains() {
	for table in filter nat; do
		iptables -w -t "$table" -S 2>/dev/null | awk -v t="$table" '$1 == "-N" && $2 ~ /^CNI-/ { print t, $2 }'
	done
}

start() {
	if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
		echo "containerd already running (pid $(cat "$PIDFILE")), socket $SOCK"
		exit 0
	fi
	for bin in containerd runc ctr; do
		command -v "$bin" >/dev/null 2>&1 || { echo "$0: $bin missing (scripts/install-deps.sh)" >&2; exit 1; }
	done
	mkdir -p "$DIR/root" "$DIR/state" "$DIR/cni/net.d" "$DIR/cni/ipam" "$DIR/images"
	# What exists before we start is not ours to remove on stop.
	ip link show "$BRIDGE" >/dev/null 2>&1 && echo "$BRIDGE" >"$DIR/bridge.preexisting" || rm -f "$DIR/bridge.preexisting"
	cni_chains >"$DIR/chains.preexisting"
	ls /var/run/netns 2>/dev/null >"$DIR/netns.preexisting" || true

	sed -e "s|@BRIDGE@|$BRIDGE|g" -e "s|@SUBNET@|$SUBNET|g" -e "s|@NETWORK@|$NETWORK|g" \
		-e "s|@IPAM_DATA_DIR@|$DIR/cni/ipam|g" \
		"$SCRIPTS/cni-conflist.json.in" >"$DIR/cni/net.d/10-kubelet.conflist.tmp"
	mv "$DIR/cni/net.d/10-kubelet.conflist.tmp" "$DIR/cni/net.d/10-kubelet.conflist"
	sed -e "s|@ROOT@|$DIR/root|g" -e "s|@STATE@|$DIR/state|g" -e "s|@ADDRESS@|$SOCK|g" \
		-e "s|@CNI_BIN_DIR@|$CNI_BIN_DIR|g" -e "s|@CNI_CONF_DIR@|$DIR/cni/net.d|g" \
		"$SCRIPTS/containerd-config.toml.in" >"$DIR/config.toml"

	containerd --config "$DIR/config.toml" >"$DIR/containerd.log" 2>&1 &
	echo $! >"$PIDFILE"
	i=0
	until ctr -a "$SOCK" version >/dev/null 2>&1; do
		i=$((i + 1))
		if [ $i -gt 300 ] || ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
			echo "$0: containerd did not come up; see $DIR/containerd.log" >&2
			tail -n 20 "$DIR/containerd.log" >&2
			exit 1
		fi
		sleep 0.1
	done

	"$SCRIPTS/build-images.sh" "$DIR/images" >/dev/null
	for image in "$DIR"/images/*.tar; do
		ctr -a "$SOCK" -n k8s.io images import "$image" >/dev/null
	done
	echo "containerd running (pid $(cat "$PIDFILE")), socket unix://$SOCK, log $DIR/containerd.log"
	ctr -a "$SOCK" -n k8s.io images ls -q
}

stop() {
	if [ -S "$SOCK" ] && command -v crictl >/dev/null 2>&1; then
		CONTAINER_RUNTIME_ENDPOINT=unix://$SOCK crictl rmp -fa >/dev/null 2>&1 || true
	fi
	if [ -f "$PIDFILE" ]; then
		pid=$(cat "$PIDFILE")
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid"
			i=0
			while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
				i=$((i + 1))
				sleep 0.1
			done
			kill -9 "$pid" 2>/dev/null || true
		fi
		rm -f "$PIDFILE"
	fi
	# The shims outlive containerd by design; end the ones of this containerd's sandboxes.
	for pidfile in $(find "$DIR/state" -name init.pid 2>/dev/null); do
		kill -9 "$(cat "$pidfile")" 2>/dev/null || true
	done
	for shim in $(pgrep -f "containerd-shim-runc-v2 .*-address $SOCK" 2>/dev/null || true); do
		kill -9 "$shim" 2>/dev/null || true
	done
	sleep 0.2
	# Sandboxes not removed through CRI leave their network namespaces mounted.
	if [ -f "$DIR/netns.preexisting" ]; then
		for ns in $(ls /var/run/netns 2>/dev/null); do
			case $ns in cni-*) ;; *) continue ;; esac
			grep -qx "$ns" "$DIR/netns.preexisting" && continue
			umount "/var/run/netns/$ns" 2>/dev/null || true
			rm -f "/var/run/netns/$ns"
		done
	fi
	# Container root filesystems are overlay mounts under DIR/root and DIR/state.
	grep -o " $DIR/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
	if [ ! -f "$DIR/bridge.preexisting" ]; then
		ip link delete "$BRIDGE" 2>/dev/null || true
	fi
	# iptables: first the rules of this network (CNI DEL removes them, unless a sandbox was
	# not removed), then the CNI chains that appeared since start and are now idle (shared
	# chains with only the static rules portmap and firewall put there, per-attachment chains
	# nothing jumps to). Chains holding someone else's rules stay.
	subnet_prefix=${SUBNET%%.0.0/*}
	for table in filter nat; do
		iptables -w -t "$table" -S | grep '^-A ' |
			grep -F -e "name: \\\"$NETWORK\\\"" -e " $subnet_prefix." | sed 's/^-A/-D/' |
			while read -r rule; do
				eval iptables -w -t "$table" "$rule" 2>/dev/null || true
			done
	done
	if [ -f "$DIR/chains.preexisting" ]; then
		cni_chains | while read -r table chain; do
			grep -qx "$table $chain" "$DIR/chains.preexisting" && continue
			case $chain in
			CNI-FORWARD | CNI-ADMIN | CNI-HOSTPORT-DNAT | CNI-HOSTPORT-SETMARK | CNI-HOSTPORT-MASQ)
				busy=$(iptables -w -t "$table" -S "$chain" | grep '^-A ' |
					grep -v -e '-j CNI-ADMIN' -e '0x2000/0x2000' || true)
				;;
			*)
				# A per-attachment chain nothing jumps to any more is an orphan.
				busy=$(iptables -w -t "$table" -S | grep -- "-j $chain\$" || true)
				;;
			esac
			[ -z "$busy" ] || continue
			iptables -w -t "$table" -S | grep -- "-j $chain\$" | sed 's/^-A/-D/' | while read -r rule; do
				eval iptables -w -t "$table" "$rule" 2>/dev/null || true
			done
			iptables -w -t "$table" -F "$chain" 2>/dev/null || true
			iptables -w -t "$table" -X "$chain" 2>/dev/null || true
		done
	fi
	# Empty pod cgroups stay behind after RemovePodSandbox.
	for hier in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
		[ -d "$hier" ] && find "$hier" -depth -type d -exec rmdir {} \; 2>/dev/null || true
	done
	rm -rf "$DIR"
	echo "containerd stopped, $DIR removed"
}

case $CMD in
	start) start ;;
	stop) stop ;;
	*) usage ;;
esac
