use super::*;

const NODE: &str = "Node-1";
const ORIGIN: &str = "/etc/kubernetes/manifests/web.yaml";

const WEB: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: nginx
    image: nginx:1.27
    ports:
    - containerPort: 80
";

fn prepare(yaml: &str) -> Result<Pod, SourceError> {
    let pod = decode_pod(yaml.as_bytes(), ORIGIN)?;
    prepare_static_pod(pod, NODE, crate::source::SOURCE_FILE, ORIGIN)
}

fn field_of(err: &SourceError) -> &str {
    match err {
        SourceError::InvalidManifest { field, .. } => field,
        SourceError::Unavailable { .. } => "<unavailable>",
    }
}

#[test]
fn image_pull_policy_defaults() {
    let cases = [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("docker.io/library/nginx", "Always"),
        ("localhost:5000/nginx", "Always"),
        ("localhost:5000/nginx:1.0", "IfNotPresent"),
        ("localhost:5000/nginx:latest", "Always"),
        ("nginx@sha256:0123abcd", "IfNotPresent"),
        ("nginx:latest@sha256:0123abcd", "Always"),
        ("registry.k8s.io/pause:3.10", "IfNotPresent"),
    ];
    for (image, want) in cases {
        assert_eq!(default_image_pull_policy(image), want, "image {image}");
    }
}

#[test]
fn prepared_pod_has_static_identity_and_defaults() {
    let pod = prepare(WEB).expect("valid manifest");
    let meta = &pod.metadata;
    assert_eq!(meta.name.as_deref(), Some("web-node-1"));
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    let uid = meta.uid.clone().expect("uid");
    assert_eq!(uid.len(), 32);
    assert!(uid.bytes().all(|b| b.is_ascii_hexdigit()));
    let ann = meta.annotations.as_ref().expect("annotations");
    assert_eq!(ann.get(labels::CONFIG_HASH), Some(&uid));
    assert_eq!(
        ann.get(labels::CONFIG_SOURCE).map(String::as_str),
        Some("file")
    );

    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.node_name.as_deref(), Some(NODE));
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
    let tol = spec.tolerations.as_ref().expect("tolerations");
    assert!(tol.iter().any(|t| t.operator.as_deref() == Some("Exists")
        && t.effect.as_deref() == Some("NoExecute")
        && t.key.is_none()));
    let c = &spec.containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
    let ports = c.ports.as_ref().expect("ports");
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    assert_eq!(ports[0].host_port, None);
}

#[test]
fn defaults_keep_explicit_values_and_cover_probes_and_volumes() {
    let yaml = "\
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: kube-system}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 5
  dnsPolicy: Default
  hostNetwork: true
  volumes:
  - name: scratch
  - name: conf
    configMap: {name: c}
  containers:
  - name: c
    image: busybox
    imagePullPolicy: Never
    ports:
    - containerPort: 8080
    livenessProbe:
      httpGet: {port: 8080}
    volumeMounts:
    - {name: scratch, mountPath: /scratch}
";
    let pod = prepare(yaml).expect("valid");
    assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.termination_grace_period_seconds, Some(5));
    assert_eq!(spec.dns_policy.as_deref(), Some("Default"));
    let c = &spec.containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("Never"));
    // hostNetwork: the host port is the container port.
    assert_eq!(c.ports.as_ref().expect("ports")[0].host_port, Some(8080));
    let probe = c.liveness_probe.as_ref().expect("probe");
    assert_eq!(probe.timeout_seconds, Some(1));
    assert_eq!(probe.period_seconds, Some(10));
    assert_eq!(probe.success_threshold, Some(1));
    assert_eq!(probe.failure_threshold, Some(3));
    let get = probe.http_get.as_ref().expect("httpGet");
    assert_eq!(get.path.as_deref(), Some("/"));
    assert_eq!(get.scheme.as_deref(), Some("HTTP"));
    let vols = spec.volumes.expect("volumes");
    assert!(
        vols[0].empty_dir.is_some(),
        "sourceless volume is an emptyDir"
    );
    assert!(vols[1].empty_dir.is_none());
    assert_eq!(
        vols[1].config_map.as_ref().and_then(|c| c.default_mode),
        Some(0o644)
    );
}

#[test]
fn json_manifests_decode_like_yaml() {
    let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},
            "spec":{"containers":[{"name":"nginx","image":"nginx:1.27",
            "ports":[{"containerPort":80}]}]}}"#;
    let from_json = prepare(json).expect("json");
    let from_yaml = prepare(WEB).expect("yaml");
    assert_eq!(from_json, from_yaml);
}

#[test]
fn uid_is_stable_and_follows_content_node_and_origin() {
    let a = prepare(WEB).expect("valid");
    let b = prepare(WEB).expect("valid");
    assert_eq!(a.metadata.uid, b.metadata.uid);

    // Formatting and comments are not content.
    let reformatted = format!("# a comment\n{}", WEB.replace("name: web", "name:   web"));
    let c = prepare(&reformatted).expect("valid");
    assert_eq!(a.metadata.uid, c.metadata.uid);

    let changed = prepare(&WEB.replace("nginx:1.27", "nginx:1.28")).expect("valid");
    assert_ne!(a.metadata.uid, changed.metadata.uid);

    let pod = decode_pod(WEB.as_bytes(), ORIGIN).expect("decode");
    let other_node = prepare_static_pod(pod.clone(), "node-2", "file", ORIGIN).expect("ok");
    assert_ne!(a.metadata.uid, other_node.metadata.uid);
    let other_file = prepare_static_pod(pod, NODE, "file", "/other.yaml").expect("ok");
    assert_ne!(a.metadata.uid, other_file.metadata.uid);
}

#[test]
fn explicit_uid_is_kept() {
    let yaml = WEB.replace("  name: web\n", "  name: web\n  uid: 1234-abcd\n");
    let pod = prepare(&yaml).expect("valid");
    assert_eq!(pod.metadata.uid.as_deref(), Some("1234-abcd"));
}

#[test]
fn validation_errors_name_the_field() {
    let pod_with =
        |spec: &str| format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n{spec}");
    let cases: Vec<(&str, String, &str)> = vec![
        ("not a mapping", "- a\n- b\n".to_string(), "manifest"),
        ("empty", "   \n".to_string(), "manifest"),
        (
            "broken yaml",
            "apiVersion: v1\nkind: [Pod\n".to_string(),
            "manifest",
        ),
        (
            "wrong kind",
            WEB.replace("kind: Pod", "kind: Deployment"),
            "kind",
        ),
        ("missing kind", WEB.replace("kind: Pod\n", ""), "kind"),
        (
            "wrong apiVersion",
            WEB.replace("apiVersion: v1", "apiVersion: apps/v1"),
            "apiVersion",
        ),
        (
            "missing apiVersion",
            WEB.replace("apiVersion: v1\n", ""),
            "apiVersion",
        ),
        (
            "missing name",
            WEB.replace("  name: web\n", "  labels: {}\n"),
            "metadata.name",
        ),
        (
            "bad name",
            WEB.replace("name: web", "name: Web_1"),
            "metadata.name",
        ),
        (
            "bad namespace",
            WEB.replace("  name: web\n", "  name: web\n  namespace: Kube_System\n"),
            "metadata.namespace",
        ),
        (
            "no spec",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\n".to_string(),
            "spec",
        ),
        (
            "no containers",
            pod_with("  containers: []\n"),
            "spec.containers",
        ),
        (
            "wrong type",
            pod_with(
                "  containers:\n  - name: a\n    image: x\n    ports:\n    - containerPort: eighty\n",
            ),
            "spec.containers[0].ports[0].containerPort",
        ),
        (
            "no image",
            pod_with("  containers:\n  - name: a\n    image: x\n  - name: b\n"),
            "spec.containers[1].image",
        ),
        (
            "image with spaces",
            pod_with("  containers:\n  - name: a\n    image: ' x'\n"),
            "spec.containers[0].image",
        ),
        (
            "no container name",
            pod_with("  containers:\n  - image: x\n"),
            "spec.containers[0].name",
        ),
        (
            "bad container name",
            pod_with("  containers:\n  - name: My.App\n    image: x\n"),
            "spec.containers[0].name",
        ),
        (
            "duplicate across init and regular",
            pod_with(
                "  initContainers:\n  - name: a\n    image: x\n  containers:\n  - name: a\n    image: x\n",
            ),
            "spec.containers[0].name",
        ),
        (
            "bad restartPolicy",
            pod_with("  restartPolicy: Sometimes\n  containers:\n  - name: a\n    image: x\n"),
            "spec.restartPolicy",
        ),
        (
            "negative grace",
            pod_with(
                "  terminationGracePeriodSeconds: -1\n  containers:\n  - name: a\n    image: x\n",
            ),
            "spec.terminationGracePeriodSeconds",
        ),
        (
            "port out of range",
            pod_with(
                "  containers:\n  - name: a\n    image: x\n    ports:\n    - containerPort: 70000\n",
            ),
            "spec.containers[0].ports[0].containerPort",
        ),
        (
            "port zero",
            pod_with(
                "  containers:\n  - name: a\n    image: x\n    ports:\n    - containerPort: 0\n",
            ),
            "spec.containers[0].ports[0].containerPort",
        ),
        (
            "host port out of range",
            pod_with(
                "  containers:\n  - name: a\n    image: x\n    ports:\n    - containerPort: 80\n      hostPort: -2\n",
            ),
            "spec.containers[0].ports[0].hostPort",
        ),
        (
            "bad protocol",
            pod_with(
                "  containers:\n  - name: a\n    image: x\n    ports:\n    - containerPort: 80\n      protocol: ICMP\n",
            ),
            "spec.containers[0].ports[0].protocol",
        ),
        (
            "bad port name",
            pod_with(
                "  containers:\n  - name: a\n    image: x\n    ports:\n    - containerPort: 80\n      name: '8080'\n",
            ),
            "spec.containers[0].ports[0].name",
        ),
        (
            "bad imagePullPolicy",
            pod_with("  containers:\n  - name: a\n    image: x\n    imagePullPolicy: Sometimes\n"),
            "spec.containers[0].imagePullPolicy",
        ),
        (
            "mount of unknown volume",
            pod_with(
                "  containers:\n  - name: a\n    image: x\n    volumeMounts:\n    - {name: data, mountPath: /data}\n",
            ),
            "spec.containers[0].volumeMounts[0].name",
        ),
        (
            "duplicate volume",
            pod_with(
                "  volumes:\n  - name: v\n  - name: v\n  containers:\n  - name: a\n    image: x\n",
            ),
            "spec.volumes[1].name",
        ),
        (
            "probe without handler",
            pod_with(
                "  containers:\n  - name: a\n    image: x\n    readinessProbe: {periodSeconds: 3}\n",
            ),
            "spec.containers[0].readinessProbe",
        ),
        (
            "liveness successThreshold",
            pod_with(
                "  containers:\n  - name: a\n    image: x\n    livenessProbe:\n      tcpSocket: {port: 80}\n      successThreshold: 2\n",
            ),
            "spec.containers[0].livenessProbe.successThreshold",
        ),
        (
            "probe port name no container port has",
            pod_with(
                "  containers:\n  - name: a\n    image: x\n    readinessProbe:\n      httpGet: {port: Http}\n",
            ),
            "spec.containers[0].readinessProbe.httpGet.port",
        ),
        (
            "preStop with two handlers",
            pod_with(
                "  containers:\n  - name: a\n    image: x\n    lifecycle:\n      preStop:\n        sleep: {seconds: 1}\n        exec: {command: [\"true\"]}\n",
            ),
            "spec.containers[0].lifecycle.preStop",
        ),
        (
            "probe on init container",
            pod_with(
                "  initContainers:\n  - name: i\n    image: x\n    readinessProbe:\n      tcpSocket: {port: 80}\n  containers:\n  - name: a\n    image: x\n",
            ),
            "spec.initContainers[0].readinessProbe",
        ),
        (
            "restartPolicy on regular container",
            pod_with("  containers:\n  - name: a\n    image: x\n    restartPolicy: Always\n"),
            "spec.containers[0].restartPolicy",
        ),
        (
            "bad dnsPolicy",
            pod_with("  dnsPolicy: Cluster\n  containers:\n  - name: a\n    image: x\n"),
            "spec.dnsPolicy",
        ),
    ];
    for (what, yaml, want_field) in cases {
        match prepare(&yaml) {
            Ok(_) => panic!("{what}: accepted, wanted an error on {want_field}"),
            Err(err) => {
                assert_eq!(field_of(&err), want_field, "{what}: {err}");
                assert!(err.to_string().starts_with(ORIGIN), "{what}: {err}");
            }
        }
    }
}

#[test]
fn valid_variants_are_accepted() {
    let pod_with = |spec: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: web.example\nspec:\n{spec}")
    };
    let cases = [
        pod_with("  containers:\n  - name: a\n    image: x\n"),
        pod_with(
            "  restartPolicy: OnFailure\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: a\n    image: x\n",
        ),
        pod_with(
            "  initContainers:\n  - name: sidecar\n    image: x\n    restartPolicy: Always\n    readinessProbe:\n      exec: {command: [/bin/true]}\n  containers:\n  - name: a\n    image: x\n",
        ),
        pod_with(
            "  containers:\n  - name: a\n    image: x\n    ports:\n    - {containerPort: 53, protocol: UDP, name: dns}\n    - {containerPort: 65535, hostPort: 8080}\n",
        ),
    ];
    for yaml in cases {
        if let Err(err) = prepare(&yaml) {
            panic!("rejected valid manifest: {err}\n{yaml}");
        }
    }
}

#[test]
fn syntax_errors_are_one_line_with_a_position() {
    for (data, want) in [
        ("apiVersion: v1\nkind: [Pod\n", "line 2"),
        ("{\"apiVersion\": }", "column"),
    ] {
        let err = decode_pod(data.as_bytes(), ORIGIN).expect_err("syntax error");
        let text = err.to_string();
        assert_eq!(field_of(&err), "manifest");
        assert!(!text.contains('\n') && text.contains(want), "{text}");
    }
}

#[test]
fn pod_lists_decode_item_by_item() {
    let list = "\
apiVersion: v1
kind: PodList
items:
- metadata: {name: a}
  spec: {containers: [{name: c, image: x}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: b}
  spec: {containers: [{name: c, image: x}]}
";
    let pods = decode_pods(list.as_bytes(), "http://x/pods").expect("list");
    let names: Vec<_> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names, ["a", "b"]);

    let bad = list.replace("image: x}]}\n- apiVersion", "image: [x]}]}\n- apiVersion");
    let err = decode_pods(bad.as_bytes(), "http://x/pods").expect_err("bad item");
    assert_eq!(field_of(&err), "items[0].spec.containers[0].image");

    let single = decode_pods(WEB.as_bytes(), "http://x/pod").expect("single pod");
    assert_eq!(single.len(), 1);
    let err = decode_pod(list.as_bytes(), ORIGIN).expect_err("a file holds one pod");
    assert_eq!(field_of(&err), "kind");
}
