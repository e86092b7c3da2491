#!/usr/bin/env bash
# Every test of the workspace: unit tests, reconciler scenarios on the fake runtime, and the
# tests against the real components (containerd, CNI plugins, the daemon). As root, the
# real-component tests are required to run; as another user they skip with a message.
# The API-server tests run against a real etcd + kube-apiserver when KUBELET_TEST_ASSETS names
# a directory with kube-apiserver; unset, ../shared/envtest is used when it has one, and then
# the real server is required (KUBELET_TEST_REQUIRE_ENVTEST=1) rather than the fake.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# cargo runs each test binary in its package's directory: a relative path given here would
# not hold there, so it is made absolute before anything changes directory.
if [ -n "${KUBELET_TEST_ASSETS:-}" ] && [ -d "$KUBELET_TEST_ASSETS" ]; then
	KUBELET_TEST_ASSETS=$(cd "$KUBELET_TEST_ASSETS" && pwd)
	export KUBELET_TEST_ASSETS
fi
cd "$ROOT"

if [ -z "${KUBELET_TEST_ASSETS:-}" ] && [ -f "$ROOT/../shared/envtest/kube-apiserver" ]; then
	KUBELET_TEST_ASSETS=$(cd "$ROOT/../shared/envtest" && pwd)
	export KUBELET_TEST_ASSETS KUBELET_TEST_REQUIRE_ENVTEST=1
fi
if [ -n "${KUBELET_TEST_ASSETS:-}" ]; then
	echo "API-server tests against the real kube-apiserver in $KUBELET_TEST_ASSETS" >&2
fi

if [ "$(id -u)" -eq 0 ]; then
	"$ROOT/scripts/install-deps.sh"
	export KUBELET_TEST_REQUIRE_CONTAINERD=1 KUBELET_TEST_REQUIRE_ROOT=1
else
	echo "not root: tests against containerd and CNI will be skipped" >&2
fi
# Libraries, binaries, integration tests and doc tests; benches are run apart (README).
cargo test --workspace "$@"
