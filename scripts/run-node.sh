#!/usr/bin/env bash
# The main job: a standalone node. Installs what is missing, builds the kubelet, starts a
# containerd of its own with locally built images, and runs the kubelet on the static pods
# in examples/static-pods until Ctrl-C (or for KUBELET_DEMO_SECONDS seconds), then stops
# everything it started.
#
#   scripts/run-node.sh                 # run until Ctrl-C
#   KUBELET_DEMO_SECONDS=60 scripts/run-node.sh
#   MANIFESTS=/etc/kubernetes/manifests scripts/run-node.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${KUBELET_DEMO_DIR:-/var/tmp/kubelet-demo}
MANIFESTS=${MANIFESTS:-$ROOT/examples/static-pods}
HEALTHZ_PORT=${HEALTHZ_PORT:-10248}

if [ "$(id -u)" -ne 0 ]; then
	echo "$0: run as root: containerd, runc and the pod cgroups need it" >&2
	exit 1
fi

"$ROOT/scripts/install-deps.sh"
echo "building the kubelet..."
cargo build --quiet --manifest-path "$ROOT/Cargo.toml" -p kubelet-bin
KUBELET=$ROOT/target/debug/kubelet

mkdir -p "$STATE"
kubelet_pid=""
cleanup() {
	trap - EXIT INT TERM
	if [ -n "$kubelet_pid" ] && kill -0 "$kubelet_pid" 2>/dev/null; then
		kill "$kubelet_pid" 2>/dev/null || true
		wait "$kubelet_pid" 2>/dev/null || true
	fi
	# The kubelet leaves pods running when it stops (as the reference does); the demo's
	# containerd and everything it ran go with it.
	"$ROOT/scripts/containerd.sh" stop "$STATE/containerd" || true
	rm -rf "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$ROOT/scripts/containerd.sh" start "$STATE/containerd"

cat >"$STATE/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: $MANIFESTS
containerRuntimeEndpoint: unix://$STATE/containerd/containerd.sock
podLogsDir: $STATE/logs
healthzPort: $HEALTHZ_PORT
fileCheckFrequency: 5s
YAML

# The sandbox image is the one containerd is configured with: image GC never removes it.
"$KUBELET" --config "$STATE/kubelet.yaml" --root-dir "$STATE/root" --hostname-override demo-node \
	--pod-infra-container-image localhost/pause:local \
	2> >(tee "$STATE/kubelet.log" >&2) &
kubelet_pid=$!

get() {
	exec 3<>"/dev/tcp/127.0.0.1/$HEALTHZ_PORT" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$1" >&3
	sed '1,/^\r$/d' <&3
	exec 3<&-
}

echo "waiting for the static pods to run..."
for _ in $(seq 1 120); do
	pods=$(get /pods 2>/dev/null || true)
	if [ -n "$pods" ] && python3 -c '
import json, sys
items = json.loads(sys.argv[1])["items"]
sys.exit(0 if items and all(p.get("status", {}).get("phase") == "Running" for p in items) else 1)
' "$pods"; then
		break
	fi
	kill -0 "$kubelet_pid" 2>/dev/null || { echo "$0: the kubelet exited; see $STATE/kubelet.log" >&2; exit 1; }
	sleep 1
done

echo
echo "== /healthz: $(get /healthz)"
echo "== pods (from http://127.0.0.1:$HEALTHZ_PORT/pods):"
get /pods | python3 -c '
import json, sys
for p in json.load(sys.stdin)["items"]:
    s = p.get("status", {})
    cs = ", ".join("%s ready=%s restarts=%s" % (c["name"], c["ready"], c["restartCount"]) for c in s.get("containerStatuses", []))
    print("  %s/%s  %s  ip=%s  %s" % (p["metadata"]["namespace"], p["metadata"]["name"], s.get("phase"), s.get("podIP"), cs))
'
sleep 6
echo "== container logs:"
find "$STATE/logs" -name '*.log' | while read -r log; do
	echo "  $log"
	tail -n 3 "$log" | sed 's/^/    /'
done
echo
if [ -n "${KUBELET_DEMO_SECONDS:-}" ]; then
	echo "running for ${KUBELET_DEMO_SECONDS}s more..."
	sleep "$KUBELET_DEMO_SECONDS"
else
	echo "the node is running; Ctrl-C stops the kubelet, containerd and the pods"
	wait "$kubelet_pid"
fi
