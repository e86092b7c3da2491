//! `/containerLogs` of the kubelet's HTTPS server over the CRI log files a real containerd
//! writes: `limitBytes`, `sinceTime`, `timestamps`, `tailLines`, and a last line without a
//! newline, which containerd records with the partial (`P`) tag when the container's stdout
//! closes, and which `kubectl logs` shows without a newline.
//!
//! Skipped when no containerd can run here, unless `KUBELET_TEST_REQUIRE_CONTAINERD=1`.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use kubelet_core::Runtime;
use kubelet_core::testing::pods::{container, pod};
use kubelet_cri::testing::BUSYBOX_IMAGE;
use support::node::{DEADLINE, Node, poll_until};

const POD: &str = "logs";
const UID: &str = "uid-logs";

async fn logs(node: &Node, query: &str) -> String {
    let url = node.url(&format!("/containerLogs/default/{POD}/main?{query}"));
    let resp = node.http.get(&url).send().await.expect("GET");
    let status = resp.status();
    let body = resp.text().await.expect("body");
    assert!(status.is_success(), "{query}: {status} {body}");
    body
}

/// Each `<RFC3339Nano> <content>` line of a `timestamps=true` answer, split.
fn stamped(body: &str) -> Vec<(Timestamp, String)> {
    body.split_inclusive('\n')
        .map(|line| {
            let (ts, content) = line.split_once(' ').expect("timestamp and content");
            let ts: Timestamp = ts
                .parse()
                .unwrap_or_else(|e| panic!("{ts:?} is not RFC 3339: {e}"));
            (ts, content.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_logs_limit_since_timestamps_and_a_partial_line() {
    let Some(node) = Node::start().await else {
        return;
    };
    // "one", then (once the test says so) "two" and "abc" without a newline, and exit.
    let script = "echo one; while [ ! -f /tmp/go ]; do sleep 0.1; done; echo two; printf abc";
    let p = pod(POD)
        .uid(UID)
        .restart_policy("Never")
        .container(
            container("main", BUSYBOX_IMAGE)
                .command(["sh", "-c", script])
                .pull_policy("IfNotPresent"),
        )
        .grace_period(2)
        .build();
    node.run_pod(p, "Running").await;
    let id = node.running_container(UID, "main").await;
    poll_until("the first line in the log", || async {
        logs(&node, "").await == "one\n"
    })
    .await;
    let first = stamped(&logs(&node, "timestamps=true").await);
    assert_eq!(first.len(), 1, "{first:?}");
    let one_at = first[0].0;
    // sinceTime has whole seconds (metav1.Time): the rest comes in a later second than "one".
    let next_second = Timestamp::from_second(one_at.as_second() + 1).expect("time");
    poll_until("the next second", || async {
        Timestamp::now() >= next_second
    })
    .await;
    node.observer
        .exec_sync(
            &id,
            &["touch".to_string(), "/tmp/go".to_string()],
            Duration::from_secs(30),
        )
        .await
        .expect("touch /tmp/go");
    let wait = node
        .reporter
        .wait_for(|r| r.last_phase(UID).as_deref() == Some("Succeeded"));
    tokio::time::timeout(DEADLINE, wait)
        .await
        .expect("the container exits");

    // The CRI file: "abc" as a partial record, as containerd writes the rest of a stream
    // that closed without a newline.
    let file = node
        .env
        .log_dir()
        .join(format!("default_{POD}_{UID}"))
        .join("main")
        .join("0.log");
    let cri = std::fs::read_to_string(&file).expect("CRI log file");
    let tags: Vec<(&str, &str)> = cri
        .lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let (_ts, stream, tag, content) = (f.next(), f.next(), f.next(), f.next());
            assert_eq!(stream, Some("stdout"), "{l}");
            (tag.unwrap_or_default(), content.unwrap_or_default())
        })
        .collect();
    assert_eq!(tags, [("F", "one"), ("F", "two"), ("P", "abc")], "{cri}");

    // The whole log: the partial line last, without a newline.
    assert_eq!(logs(&node, "").await, "one\ntwo\nabc");
    // timestamps: each line with its record's time, in order, the partial one too.
    let all = stamped(&logs(&node, "timestamps=true").await);
    let contents: Vec<&str> = all.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(contents, ["one\n", "two\n", "abc"]);
    assert_eq!(all[0].0, one_at);
    assert!(all[1].0 >= next_second && all[2].0 >= all[1].0, "{all:?}");
    // limitBytes: the first bytes of the output, cut mid-line.
    assert_eq!(logs(&node, "limitBytes=6").await, "one\ntw");
    assert_eq!(logs(&node, "limitBytes=10").await, "one\ntwo\nab");
    // sinceTime: from the second after "one" on.
    let since = format!("sinceTime={}", next_second);
    assert_eq!(logs(&node, &since).await, "two\nabc");
    let stamped_since = stamped(&logs(&node, &format!("{since}&timestamps=true")).await);
    assert_eq!(stamped_since, all[1..]);
    let future = Timestamp::now() + 1.hour();
    assert_eq!(logs(&node, &format!("sinceTime={future}")).await, "");
    // tailLines counts the partial line as a line.
    assert_eq!(logs(&node, "tailLines=1").await, "abc");
    assert_eq!(logs(&node, "tailLines=2").await, "two\nabc");
    // A bad sinceTime is the reference's 400.
    let resp = node
        .http
        .get(node.url(&format!(
            "/containerLogs/default/{POD}/main?sinceTime=yesterday"
        )))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST);

    node.shutdown().await;
}
