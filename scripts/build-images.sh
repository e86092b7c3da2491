#!/bin/sh
# Build the images the tests and the standalone run need, as OCI image-layout tarballs,
# without a registry:
#   OUTDIR/busybox.tar          docker.io/library/busybox:local    (busybox-static and its
#                                                                  applets; runs as root)
#   OUTDIR/busybox-nonroot.tar  docker.io/library/busybox:nonroot  (the same, USER 1000:1000)
#   OUTDIR/busybox-nobody.tar   docker.io/library/busybox:nobody   (the same, USER nobody: a
#                                                                  name, not a number)
#   OUTDIR/pause.tar            localhost/pause:local              (catatonit -P as the pause
#                                                                  process)
# Import each with: ctr -a SOCKET -n k8s.io images import OUTDIR/NAME.tar
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
OUTDIR=$1
BUSYBOX=${BUSYBOX:-/bin/busybox}
CATATONIT=${CATATONIT:-/usr/bin/catatonit}

for tool in tar sha256sum; do
	command -v "$tool" >/dev/null 2>&1 || { echo "$0: $tool is required" >&2; exit 1; }
done
[ -x "$BUSYBOX" ] || { echo "$0: $BUSYBOX missing (apt-get install busybox-static)" >&2; exit 1; }
[ -x "$CATATONIT" ] || { echo "$0: $CATATONIT missing (apt-get install catatonit)" >&2; exit 1; }

case $(uname -m) in
	x86_64) ARCH=amd64 ;;
	aarch64) ARCH=arm64 ;;
	armv7l) ARCH=arm ;;
	ppc64le) ARCH=ppc64le ;;
	s390x) ARCH=s390x ;;
	*) echo "$0: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac

mkdir -p "$OUTDIR"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# A fixed mtime keeps the layers, and so the image IDs, the same from one build to the next.
EPOCH=2024-01-01T00:00:00Z
CREATED=2024-01-01T00:00:00Z

digest() { sha256sum "$1" | cut -d' ' -f1; }
size() { wc -c <"$1" | tr -d ' '; }

# build_image NAME REF ROOTFS CONFIG_JSON_FRAGMENT
#   CONFIG_JSON_FRAGMENT: the "config" object of the image configuration.
build_image() {
	name=$1 ref=$2 rootfs=$3 cfg=$4
	layout=$WORK/$name-layout
	mkdir -p "$layout/blobs/sha256"

	layer=$WORK/$name-layer.tar
	tar --sort=name --mtime="$EPOCH" --numeric-owner --owner=0 --group=0 \
		-C "$rootfs" -cf "$layer" .
	layer_digest=$(digest "$layer")
	layer_size=$(size "$layer")
	cp "$layer" "$layout/blobs/sha256/$layer_digest"

	config=$WORK/$name-config.json
	printf '{"created":"%s","architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"%s","created_by":"kubelet scripts/build-images.sh"}]}' \
		"$CREATED" "$ARCH" "$cfg" "$layer_digest" "$CREATED" >"$config"
	config_digest=$(digest "$config")
	config_size=$(size "$config")
	cp "$config" "$layout/blobs/sha256/$config_digest"

	manifest=$WORK/$name-manifest.json
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
		"$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$manifest"
	manifest_digest=$(digest "$manifest")
	manifest_size=$(size "$manifest")
	cp "$manifest" "$layout/blobs/sha256/$manifest_digest"

	# io.containerd.image.name is what `ctr images import` names the image by; the OCI
	# ref.name annotation carries the same reference for other tools.
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
		"$manifest_digest" "$manifest_size" "$ARCH" "$ref" "$ref" >"$layout/index.json"
	printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

	tar --sort=name --mtime="$EPOCH" --numeric-owner --owner=0 --group=0 \
		-C "$layout" -cf "$OUTDIR/$name.tar.tmp" oci-layout index.json blobs
	mv "$OUTDIR/$name.tar.tmp" "$OUTDIR/$name.tar"
	echo "$OUTDIR/$name.tar: $ref sha256:$manifest_digest"
}

# busybox: the static binary, every applet as a link, and the files programs expect.
bb=$WORK/busybox-rootfs
mkdir -p "$bb/bin" "$bb/sbin" "$bb/usr/bin" "$bb/usr/sbin" "$bb/etc" "$bb/root" "$bb/tmp" \
	"$bb/var" "$bb/proc" "$bb/sys" "$bb/dev"
chmod 1777 "$bb/tmp"
chmod 700 "$bb/root"
cp "$BUSYBOX" "$bb/bin/busybox"
chmod 755 "$bb/bin/busybox"
"$BUSYBOX" --list-full | while read -r applet; do
	[ "$applet" = bin/busybox ] && continue
	ln -sf /bin/busybox "$bb/$applet"
done
[ -e "$bb/bin/sh" ] || ln -s /bin/busybox "$bb/bin/sh"
cat >"$bb/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1000:app:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$bb/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
app:x:1000:
nogroup:x:65534:
GROUP
build_image busybox docker.io/library/busybox:local "$bb" \
	'{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]}'
# The same root file system with a user in the image configuration, as images built with
# USER are: a numeric one (the runtime reports it as the image's uid) and a name (reported
# as its username), for runAsNonRoot and the image-user tests.
build_image busybox-nonroot docker.io/library/busybox:nonroot "$bb" \
	'{"User":"1000:1000","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]}'
build_image busybox-nobody docker.io/library/busybox:nobody "$bb" \
	'{"User":"nobody","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]}'

# pause: catatonit reaps zombies and, with -P, just waits as the sandbox's pause process.
pa=$WORK/pause-rootfs
mkdir -p "$pa"
cp "$CATATONIT" "$pa/catatonit"
chmod 755 "$pa/catatonit"
build_image pause localhost/pause:local "$pa" \
	'{"Entrypoint":["/catatonit","-P"],"User":"65535:65535","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}'
