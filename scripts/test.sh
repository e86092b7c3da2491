#!/usr/bin/env bash
# Every test of the workspace: unit tests, reconciler scenarios on the fake runtime, and the
# tests against the real components (containerd, CNI plugins, the daemon). As root, the
# real-component tests are required to run; as another user they skip with a message.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [ "$(id -u)" -eq 0 ]; then
	"$ROOT/scripts/install-deps.sh"
	export KUBELET_TEST_REQUIRE_CONTAINERD=1 KUBELET_TEST_REQUIRE_ROOT=1
else
	echo "not root: tests against containerd and CNI will be skipped" >&2
fi
# Libraries, binaries, integration tests and doc tests; benches are run apart (README).
cargo test --workspace "$@"
