//! Tests of the strategic merge: the schema, two-way patches and their application. What the
//! real kube-apiserver does with each shape is pinned by kubelet-core/tests/envtest_patch.rs.

use serde_json::{Value, json};

use super::*;

fn pod() -> StrategicMerge<'static> {
    StrategicMerge::for_kind("v1", "Pod")
}

fn node() -> StrategicMerge<'static> {
    StrategicMerge::for_kind("v1", "Node")
}

/// Writes the built-in schema from an OpenAPI v2 document: run with
/// `KUBELET_WRITE_PATCH_SCHEMA=<openapi-v2.json>` (a server's `/openapi/v2`).
#[test]
fn write_builtin_schema_when_asked() {
    let Some(path) = std::env::var_os("KUBELET_WRITE_PATCH_SCHEMA") else {
        return;
    };
    let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let version = doc["info"]["version"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    let schema =
        PatchSchema::from_openapi_v2(&doc, &format!("kube-apiserver {version} /openapi/v2"));
    let out = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/strategic_merge/patch_schema.json"
    );
    std::fs::write(out, schema_file(&schema)).unwrap();
}

/// The file form of a schema: one kind or one type per line, for readable diffs.
pub(crate) fn schema_file(schema: &PatchSchema) -> String {
    let line = |k: &String, v: String| format!("    {}: {v}", json!(k));
    let kinds: Vec<String> = schema
        .kinds
        .iter()
        .map(|(k, v)| line(k, json!(v).to_string()))
        .collect();
    let types: Vec<String> = schema
        .types
        .iter()
        .map(|(k, v)| line(k, serde_json::to_string(v).unwrap()))
        .collect();
    format!(
        "{{\n  \"source\": {},\n  \"kinds\": {{\n{}\n  }},\n  \"types\": {{\n{}\n  }}\n}}\n",
        json!(schema.source),
        kinds.join(",\n"),
        types.join(",\n")
    )
}

#[test]
fn builtin_schema_knows_the_status_lists() {
    let schema = PatchSchema::builtin();
    assert!(schema.source.contains("v1.28"), "{}", schema.source);
    let status = schema
        .kind("v1", "Pod")
        .and_then(|p| schema.field(p, "status"));
    let status = status.and_then(|f| f.type_name.as_deref()).unwrap();
    let conditions = schema.field(status, "conditions").unwrap();
    assert!(conditions.merges() && conditions.key() == "type");
    let ips = schema.field(status, "podIPs").unwrap();
    assert!(ips.merges() && ips.key() == "ip");
    // No patch strategy: atomic, replaced whole by a patch.
    let containers = schema.field(status, "containerStatuses").unwrap();
    assert!(containers.list && !containers.merges());
    let node_status = schema.field("io.k8s.api.core.v1.Node", "status").unwrap();
    let node_status = node_status.type_name.as_deref().unwrap();
    assert_eq!(
        schema.field(node_status, "addresses").unwrap().key(),
        "type"
    );
    assert!(!schema.field(node_status, "images").unwrap().merges());
    assert!(schema.kind("coordination.k8s.io/v1", "Lease").is_some());
}

#[test]
fn schema_file_round_trips() {
    let schema = PatchSchema::builtin();
    let again: PatchSchema = serde_json::from_str(&schema_file(schema)).unwrap();
    assert_eq!(&again, schema);
}

fn status(v: Value) -> Value {
    json!({ "status": v })
}

#[test]
fn directive_in_an_atomic_list_is_stored_as_an_element() {
    // What kube-apiserver v1.28 stores for the kubelet's former patch shape: the second patch
    // leaves a `{"$patch": "replace"}` element in containerStatuses (a phantom status).
    let app = |state: Value| json!({"name": "app", "image": "i", "state": state});
    let first =
        status(json!({"containerStatuses": [app(json!({"running": {}})), {"$patch": "replace"}]}));
    let second = status(
        json!({"containerStatuses": [app(json!({"terminated": {"exitCode": 1}})), {"$patch": "replace"}]}),
    );
    let stored = pod()
        .apply(&status(json!({"phase": "Pending"})), &first)
        .unwrap();
    assert_eq!(
        stored["status"]["containerStatuses"],
        json!([app(json!({"running": {}}))])
    );
    let stored = pod().apply(&stored, &second).unwrap();
    assert_eq!(
        stored["status"]["containerStatuses"],
        json!([app(json!({"terminated": {"exitCode": 1}})), {"$patch": "replace"}])
    );
}

#[test]
fn directives_under_an_absent_field_are_dropped() {
    let patch = status(json!({
        "conditions": [{"type": "A", "status": "True"}, {"type": "B", "$patch": "delete"}],
        "containerStatuses": [{"name": "app", "state": {"$patch": "replace", "running": {}}}],
    }));
    let stored = pod().apply(&status(json!({})), &patch).unwrap();
    assert_eq!(
        stored["status"],
        json!({"conditions": [{"type": "A", "status": "True"}], "containerStatuses": [{"name": "app"}]})
    );
}

#[test]
fn keyed_lists_follow_set_element_order_as_the_server_does() {
    // Seen on kube-apiserver v1.28: [A, B] + order [B, A] -> [B, A]; then C added with order
    // [C, A] -> [C, B, A] (B, not named, keeps its place before A).
    let cond = |t: &str| json!({"type": t, "status": "True"});
    let start = status(json!({"conditions": [cond("A"), cond("B")]}));
    let swapped = pod()
        .apply(
            &start,
            &status(json!({"$setElementOrder/conditions": [{"type": "B"}, {"type": "A"}]})),
        )
        .unwrap();
    assert_eq!(
        swapped["status"]["conditions"],
        json!([cond("B"), cond("A")])
    );
    let added = pod()
        .apply(
            &swapped,
            &status(json!({"$setElementOrder/conditions": [{"type": "C"}, {"type": "A"}], "conditions": [cond("C")]})),
        )
        .unwrap();
    assert_eq!(
        added["status"]["conditions"],
        json!([cond("C"), cond("B"), cond("A")])
    );
    // A merged podIPs item not in the server's order goes first.
    let ips = pod()
        .apply(
            &status(json!({"podIPs": [{"ip": "10.1.1.1"}]})),
            &status(json!({"podIPs": [{"ip": "10.1.1.3"}]})),
        )
        .unwrap();
    assert_eq!(
        ips["status"]["podIPs"],
        json!([{"ip": "10.1.1.3"}, {"ip": "10.1.1.1"}])
    );
}

#[test]
fn refusals_carry_the_servers_messages() {
    let start = status(json!({"conditions": [{"type": "A", "status": "True"}]}));
    let refused = |patch: Value| pod().apply(&start, &status(patch)).unwrap_err();
    let e = refused(json!({"conditions": [{"type": "A", "$patch": "merge"}]}));
    assert_eq!(
        (e.kind, e.message.as_str()),
        (
            PatchErrorKind::Internal,
            "merging lists cannot yet be specified in the patch"
        )
    );
    let e = refused(json!({"conditions": [{"type": "A", "$patch": "bogus"}]}));
    assert_eq!(
        e.message,
        "unknown patch type: bogus in map: map[$patch:bogus type:A]"
    );
    let e = refused(json!({"$patch": "bogus"}));
    assert_eq!(
        e.message,
        "unknown patch type: bogus in map: map[$patch:bogus]"
    );
    let e = refused(json!({"conditions": [{"status": "True"}]}));
    assert_eq!(
        e.message,
        "map: map[status:True] does not contain declared merge key: type"
    );
    let e = refused(json!({
        "$setElementOrder/conditions": [{"type": "Ready"}, {"type": "X"}],
        "conditions": [{"type": "X", "status": "True"}, {"type": "Ready", "status": "False"}],
    }));
    assert_eq!(
        e.message,
        "The order in patch list:\n[map[status:True type:X] map[status:False type:Ready]]\n doesn't match $setElementOrder list:\n[map[type:Ready] map[type:X]]\n"
    );
}

#[test]
fn retain_keys_and_primitive_deletions() {
    let deployment = StrategicMerge::for_kind("apps/v1", "Deployment");
    let obj = json!({"metadata": {"finalizers": ["a", "b", "c"]}, "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
    let patch = json!({
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["b"], "finalizers": ["d"]},
        "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}},
    });
    let out = deployment.apply(&obj, &patch).unwrap();
    // Items only in the patch go before the server's (apimachinery's mergeSortedSlice).
    assert_eq!(out["metadata"]["finalizers"], json!(["d", "a", "c"]));
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    let bad = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
    assert_eq!(
        deployment.apply(&obj, &bad).unwrap_err().kind,
        PatchErrorKind::BadRequest
    );
}

/// What the diff must do: applied to the original, give the modified object.
fn round_trip(merge: StrategicMerge<'_>, original: &Value, modified: &Value) -> Value {
    let patch = merge.diff(original, modified);
    assert_eq!(
        &merge.apply(original, &patch).unwrap(),
        modified,
        "patch {patch:#}"
    );
    patch
}

#[test]
fn first_pod_status_report() {
    let server = status(
        json!({"phase": "Pending", "qosClass": "BestEffort", "conditions": [{"type": "PodScheduled", "status": "True"}]}),
    );
    let ours = status(json!({
        "phase": "Running", "qosClass": "BestEffort", "podIP": "10.0.0.3",
        "podIPs": [{"ip": "10.0.0.3"}],
        "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {"startedAt": "t"}}}],
    }));
    let patch = round_trip(pod(), &server, &ours);
    assert_eq!(
        patch,
        status(json!({
            "phase": "Running", "podIP": "10.0.0.3", "podIPs": [{"ip": "10.0.0.3"}],
            "$setElementOrder/conditions": [{"type": "PodScheduled"}, {"type": "Ready"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {"startedAt": "t"}}}],
        }))
    );
}

#[test]
fn container_going_from_running_to_terminated_is_sent_whole() {
    let running = status(json!({"containerStatuses": [
        {"name": "app", "restartCount": 0, "state": {"running": {"startedAt": "t"}}},
        {"name": "side", "restartCount": 0, "state": {"running": {"startedAt": "t"}}},
    ]}));
    let terminated = status(json!({"containerStatuses": [
        {"name": "app", "restartCount": 0, "state": {"terminated": {"exitCode": 1}}},
        {"name": "side", "restartCount": 0, "state": {"running": {"startedAt": "t"}}},
    ]}));
    let patch = round_trip(pod(), &running, &terminated);
    assert_eq!(
        patch, terminated,
        "atomic: the whole new list, no directive"
    );
}

#[test]
fn removed_entries_and_fields() {
    let before = status(json!({
        "message": "m", "reason": "r", "podIPs": [{"ip": "10.0.0.3"}, {"ip": "fd00::3"}],
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
    }));
    let after = status(json!({
        "podIPs": [{"ip": "10.0.0.3"}],
        "conditions": [{"type": "Ready", "status": "True"}],
    }));
    let patch = round_trip(pod(), &before, &after);
    assert_eq!(
        patch,
        status(json!({
            "message": null, "reason": null,
            "$setElementOrder/podIPs": [{"ip": "10.0.0.3"}],
            "podIPs": [{"$patch": "delete", "ip": "fd00::3"}],
            "$setElementOrder/conditions": [{"type": "Ready"}],
            "conditions": [{"$patch": "delete", "type": "ContainersReady"}],
        }))
    );
}

#[test]
fn a_condition_owned_by_someone_else_stays() {
    // The server has a readiness gate condition the kubelet's status does not carry; a
    // patch made from the kubelet's view (which does not know it) leaves it alone.
    let server = status(json!({"conditions": [
        {"type": "example.com/gate", "status": "True"},
        {"type": "Ready", "status": "False"},
    ]}));
    let patch = pod().diff(
        &status(json!({"conditions": [{"type": "Ready", "status": "False"}]})),
        &status(json!({"conditions": [{"type": "Ready", "status": "True"}]})),
    );
    let stored = pod().apply(&server, &patch).unwrap();
    assert_eq!(
        stored["status"]["conditions"],
        json!([{"type": "example.com/gate", "status": "True"}, {"type": "Ready", "status": "True"}])
    );
}

#[test]
fn node_status_lists() {
    let before = status(json!({
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n"}],
        "images": [{"names": ["a"], "sizeBytes": 1}],
        "volumesInUse": ["v1"],
        "conditions": [{"type": "Ready", "status": "False"}],
    }));
    let after = status(json!({
        "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n"}],
        "images": [{"names": ["a"], "sizeBytes": 1}, {"names": ["b"], "sizeBytes": 2}],
        "conditions": [{"type": "Ready", "status": "True"}],
    }));
    let patch = round_trip(node(), &before, &after);
    assert_eq!(patch["status"]["volumesInUse"], Value::Null);
    assert_eq!(patch["status"]["images"], after["status"]["images"]);
    assert_eq!(round_trip(node(), &after, &after), json!({}));
}

#[test]
fn primitive_lists_diff_with_deletions() {
    let before = json!({"metadata": {"finalizers": ["a", "b"]}});
    let after = json!({"metadata": {"finalizers": ["c", "a"]}});
    let patch = round_trip(pod(), &before, &after);
    assert_eq!(
        patch,
        json!({"metadata": {
            "$deleteFromPrimitiveList/finalizers": ["b"],
            "$setElementOrder/finalizers": ["c", "a"],
            "finalizers": ["c"],
        }})
    );
}
