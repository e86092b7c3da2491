use serde_json::json;

use super::*;

fn node() -> NodeInfo {
    NodeInfo {
        name: "node-1".into(),
        operating_system: "linux".into(),
        labels: [
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/hostname", "node-1"),
            ("zone", "a"),
            ("cores", "8"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        taints: Vec::new(),
        allocatable: [("cpu", "2"), ("memory", "1Gi"), ("pods", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect(),
    }
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "app", "image": "busybox"}]);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": spec,
    }))
    .unwrap()
}

fn requesting(name: &str, requests: serde_json::Value) -> Pod {
    pod(
        name,
        json!({"containers": [{"name": "app", "image": "busybox", "resources": {"requests": requests}}]}),
    )
}

fn refused(pod: &Pod, others: &[Pod], node: &NodeInfo) -> (String, String) {
    let r = admit(pod, others, node).expect_err("refused");
    (r.reason, r.message)
}

#[test]
fn resources_are_counted_against_what_the_other_pods_request() {
    let node = node();
    let half = requesting("half", json!({"cpu": "1500m", "memory": "256Mi"}));
    assert_eq!(admit(&half, &[], &node), Ok(()));
    let more = requesting("more", json!({"cpu": "600m"}));
    assert_eq!(
        refused(&more, std::slice::from_ref(&half), &node),
        (
            "OutOfcpu".to_string(),
            "Node didn't have enough resource: cpu, requested: 600, used: 1500, capacity: 2000"
                .to_string()
        )
    );
    let big = requesting("big", json!({"memory": "800Mi"}));
    assert_eq!(
        refused(&big, std::slice::from_ref(&half), &node),
        (
            "OutOfmemory".to_string(),
            format!(
                "Node didn't have enough resource: memory, requested: {}, used: {}, capacity: {}",
                800 << 20,
                256 << 20,
                1 << 30
            )
        )
    );
    // Exactly what is left fits; a pod without requests always fits the resources.
    let rest = requesting("rest", json!({"cpu": "500m", "memory": "768Mi"}));
    assert_eq!(admit(&rest, std::slice::from_ref(&half), &node), Ok(()));
    assert_eq!(
        admit(&pod("free", json!({})), &[half.clone(), rest], &node),
        Ok(())
    );
    // A resource the node lacks: a native one is short, an extended one is overlooked.
    let huge = requesting("huge", json!({"hugepages-2Mi": "2Mi"}));
    assert_eq!(refused(&huge, &[], &node).0, "OutOfhugepages-2Mi");
    let gpu = requesting("gpu", json!({"example.com/gpu": "1"}));
    assert_eq!(admit(&gpu, &[], &node), Ok(()));
}

#[test]
fn one_pod_more_than_the_node_allows_is_refused() {
    let node = node();
    let others: Vec<Pod> = ["a", "b", "c"].iter().map(|n| pod(n, json!({}))).collect();
    assert_eq!(
        refused(&pod("d", json!({})), &others, &node),
        (
            "OutOfpods".to_string(),
            "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3"
                .to_string()
        )
    );
}

#[test]
fn init_containers_count_at_their_peak_and_overhead_is_added() {
    let node = node();
    let p = pod(
        "init",
        json!({
            "initContainers": [{"name": "setup", "image": "busybox",
                "resources": {"requests": {"cpu": "2500m"}}}],
            "containers": [{"name": "app", "image": "busybox",
                "resources": {"requests": {"cpu": "100m"}}}],
        }),
    );
    assert_eq!(
        refused(&p, &[], &node).1,
        "Node didn't have enough resource: cpu, requested: 2500, used: 0, capacity: 2000"
    );
    let mut with_overhead = requesting("oh", json!({"cpu": "1900m"}));
    with_overhead.spec.as_mut().unwrap().overhead =
        Some([("cpu".to_string(), Quantity("200m".into()))].into());
    assert_eq!(refused(&with_overhead, &[], &node).0, "OutOfcpu");
}

#[test]
fn a_critical_pod_is_admitted_whatever_it_requests() {
    let node = node();
    let mut p = requesting("etcd", json!({"cpu": "64"}));
    p.metadata.annotations = Some([("kubernetes.io/config.source".into(), "file".into())].into());
    assert_eq!(admit(&p, &[], &node), Ok(()));
}

#[test]
fn node_selector_and_required_affinity() {
    let node = node();
    let affinity_failed = (
        "NodeAffinity".to_string(),
        "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector"
            .to_string(),
    );
    assert_eq!(
        admit(
            &pod("s", json!({"nodeSelector": {"zone": "a"}})),
            &[],
            &node
        ),
        Ok(())
    );
    assert_eq!(
        refused(
            &pod("s", json!({"nodeSelector": {"zone": "b"}})),
            &[],
            &node
        ),
        affinity_failed
    );
    let required = |terms: serde_json::Value| {
        pod(
            "aff",
            json!({"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
        )
    };
    for (terms, fits) in [
        (
            json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]),
            true,
        ),
        (
            json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]),
            false,
        ),
        (
            json!([{"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}]),
            true,
        ),
        (
            json!([{"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}]),
            false,
        ),
        (
            json!([{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]),
            true,
        ),
        (
            json!([{"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}]),
            false,
        ),
        (
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]),
            true,
        ),
        // Any term; within one, all requirements.
        (
            json!([
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                {"matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a"]},
                    {"key": "cores", "operator": "Gt", "values": ["2"]}
                ]}
            ]),
            true,
        ),
        (json!([{}]), false),
    ] {
        let verdict = admit(&required(terms.clone()), &[], &node);
        if fits {
            assert_eq!(verdict, Ok(()), "{terms}");
        } else {
            assert_eq!(
                verdict.map_err(|r| (r.reason, r.message)),
                Err(affinity_failed.clone()),
                "{terms}"
            );
        }
    }
}

#[test]
fn another_nodes_name_host_ports_taken_and_taints() {
    let node = node();
    assert_eq!(
        refused(&pod("n", json!({"nodeName": "node-2"})), &[], &node),
        (
            "NodeName".to_string(),
            "Predicate NodeName failed: node(s) didn't match the requested node name".to_string()
        )
    );
    let port = |name: &str, ports: serde_json::Value| {
        pod(
            name,
            json!({"containers": [{"name": "app", "image": "busybox", "ports": ports}]}),
        )
    };
    let web = port("web", json!([{"containerPort": 80, "hostPort": 8080}]));
    let same = port(
        "same",
        json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "127.0.0.1"}]),
    );
    assert_eq!(
        refused(&same, std::slice::from_ref(&web), &node),
        (
            "NodePorts".to_string(),
            "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
                .to_string()
        )
    );
    let udp = port(
        "udp",
        json!([{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]),
    );
    assert_eq!(admit(&udp, std::slice::from_ref(&web), &node), Ok(()));

    let mut tainted = node.clone();
    tainted.taints = vec![Taint {
        key: "maintenance".into(),
        value: Some("now".into()),
        effect: "NoExecute".into(),
        ..Taint::default()
    }];
    assert_eq!(
        refused(&pod("t", json!({})), &[], &tainted),
        (
            "TaintToleration".to_string(),
            "Predicate TaintToleration failed: node(s) had taints that the pod didn't tolerate"
                .to_string()
        )
    );
    let tolerating = pod(
        "tol",
        json!({"tolerations": [{"key": "maintenance", "operator": "Equal", "value": "now", "effect": "NoExecute"}]}),
    );
    assert_eq!(admit(&tolerating, &[], &tainted), Ok(()));
    let wrong_value = pod(
        "tol",
        json!({"tolerations": [{"key": "maintenance", "value": "later"}]}),
    );
    assert!(admit(&wrong_value, &[], &tainted).is_err());
    // NoSchedule taints are the scheduler's business; static pods ignore taints here.
    let mut no_schedule = tainted.clone();
    no_schedule.taints[0].effect = "NoSchedule".into();
    assert_eq!(admit(&pod("t", json!({})), &[], &no_schedule), Ok(()));
    let mut static_pod = pod("static", json!({}));
    static_pod.metadata.annotations =
        Some([("kubernetes.io/config.source".into(), "file".into())].into());
    assert_eq!(admit(&static_pod, &[], &tainted), Ok(()));
}

#[test]
fn the_os_must_be_the_nodes() {
    let node = node();
    let mut windows = pod("w", json!({}));
    windows.metadata.labels = Some([("kubernetes.io/os".into(), "windows".into())].into());
    assert_eq!(
        refused(&windows, &[], &node).0,
        "PodOSSelectorNodeLabelDoesNotMatch"
    );
    let field = pod("f", json!({"os": {"name": "windows"}}));
    assert_eq!(
        refused(&field, &[], &node),
        (
            "PodOSNotSupported".to_string(),
            "Failed to admit pod as the OS field doesn't match node OS".to_string()
        )
    );
    assert_eq!(
        admit(&pod("l", json!({"os": {"name": "linux"}})), &[], &node),
        Ok(())
    );
}
