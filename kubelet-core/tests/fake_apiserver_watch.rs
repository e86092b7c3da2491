#![cfg(feature = "apiserver")]
//! WATCH against the fake kube-apiserver through kube-rs: resume from a resourceVersion,
//! 410 Gone and the relist of kube_runtime's watcher, bookmarks, timeouts, selector
//! transitions, streaming lists, dropped watches. Expected behaviour is that of
//! "Kubernetes API Concepts" (efficient detection of changes, watch bookmarks,
//! 410 Gone responses, streaming lists).

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config, ResourceExt};
use kubelet_core::testing::apiserver::Verb;
use kubelet_core::testing::{FakeApiServer, FakeApiServerOptions};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(20);

async fn client_for(server: &FakeApiServer) -> Client {
    let kc = Kubeconfig::from_yaml(&server.kubeconfig()).expect("kubeconfig parses");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client")
}

fn pod(name: &str, node: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1.36"}]}
    }))
    .expect("pod")
}

/// The next watch event, within the deadline.
async fn next<S, T>(stream: &mut S) -> T
where
    S: futures::Stream<Item = T> + Unpin,
{
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("an event within the deadline")
        .expect("the stream is still open")
}

fn describe(ev: &WatchEvent<Pod>) -> String {
    match ev {
        WatchEvent::Added(p) => format!("ADDED {}", p.name_any()),
        WatchEvent::Modified(p) => format!("MODIFIED {}", p.name_any()),
        WatchEvent::Deleted(p) => format!("DELETED {}", p.name_any()),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(s) => format!("ERROR {} {}", s.code, s.reason),
    }
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version_and_starts_from_state_without_one() {
    let server = FakeApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client_for(&server).await, "default");
    let a = server.create(&pod("a", "n1", "web")).unwrap();
    let from = a.resource_version().unwrap();
    server.create(&pod("b", "n1", "web")).unwrap();
    server
        .modify::<Pod>("default", "a", true, |p| {
            p.status.as_mut().unwrap().phase = Some("Running".into())
        })
        .unwrap();

    let mut s = pods
        .watch(&WatchParams::default(), &from)
        .await
        .unwrap()
        .boxed();
    assert_eq!(describe(&next(&mut s).await.unwrap()), "ADDED b");
    assert_eq!(describe(&next(&mut s).await.unwrap()), "MODIFIED a");
    // b is bound to a node: only a zero grace period deletes it at once.
    let now = kubelet_core::testing::apiserver::DeleteOptions {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    server.delete::<Pod>("default", "b", &now).unwrap();
    let gone = next(&mut s).await.unwrap();
    assert_eq!(describe(&gone), "DELETED b");
    if let WatchEvent::Deleted(p) = gone {
        assert_eq!(
            p.resource_version().unwrap(),
            server.resource_version().to_string(),
            "a DELETED object carries the deletion's RV"
        );
    }

    // "0": the current state as ADDED, then live changes.
    let mut s = pods
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    assert_eq!(describe(&next(&mut s).await.unwrap()), "ADDED a");
    server.create(&pod("c", "n2", "web")).unwrap();
    assert_eq!(describe(&next(&mut s).await.unwrap()), "ADDED c");

    // A watch on one namespace sees nothing of another.
    let other: Api<Pod> = Api::namespaced(client_for(&server).await, "kube-system");
    let mut s = other
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .boxed();
    server.create(&pod("d", "n2", "web")).unwrap();
    assert!(
        tokio::time::timeout(DEADLINE, s.next())
            .await
            .unwrap()
            .is_none(),
        "timeoutSeconds ends the watch with no event"
    );
}

#[tokio::test]
async fn too_old_resource_version_is_410_and_the_watcher_relists() {
    let options = FakeApiServerOptions {
        history_limit: 4,
        ..Default::default()
    };
    let server = FakeApiServer::start_with(options, false).await.unwrap();
    let client = client_for(&server).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let first = server.create(&pod("a", "n1", "web")).unwrap();
    for i in 0..6 {
        server.create(&pod(&format!("x{i}"), "n1", "web")).unwrap();
    }
    let mut s = pods
        .watch(&WatchParams::default(), &first.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    match next(&mut s).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(
                status.message.starts_with("too old resource version"),
                "{}",
                status.message
            );
        }
        Ok(WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // kube_runtime's watcher: list, watch; when changes it has not seen were compacted
    // away while it was cut off, its re-watch gets 410 and it relists.
    let cfg = watcher::Config::default().fields("spec.nodeName=n1");
    let mut w = watcher(pods.clone(), cfg).boxed();
    let mut initial = 0;
    loop {
        match next(&mut w).await.unwrap() {
            watcher::Event::InitApply(_) => initial += 1,
            watcher::Event::InitDone => break,
            other => eprintln!("watcher init: {other:?}"),
        }
    }
    assert_eq!(initial, 7);
    server.start_outage();
    server.clear_requests();
    server.create(&pod("late", "n1", "web")).unwrap();
    server.compact();
    server.end_outage();
    let mut saw_init = false;
    let mut relisted = Vec::new();
    loop {
        match next(&mut w).await {
            Ok(watcher::Event::Init) => saw_init = true,
            Ok(watcher::Event::InitApply(p)) => relisted.push(p.name_any()),
            Ok(watcher::Event::InitDone) => break,
            other => eprintln!("watcher: {other:?}"),
        }
    }
    assert!(saw_init);
    assert!(relisted.contains(&"late".to_string()), "{relisted:?}");
    let verbs: Vec<_> = server
        .requests()
        .into_iter()
        .filter_map(|r| r.verb)
        .collect();
    let watch_at = verbs
        .iter()
        .position(|v| *v == Verb::Watch)
        .expect("a re-watch");
    assert!(
        verbs[watch_at..].contains(&Verb::List),
        "a list after the failed watch: {verbs:?}"
    );
    let lists: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.verb == Some(Verb::List))
        .collect();
    assert_eq!(
        lists[0].query_param("fieldSelector").as_deref(),
        Some("spec.nodeName=n1")
    );
}

#[tokio::test]
async fn bookmarks_carry_the_current_resource_version() {
    let options = FakeApiServerOptions {
        bookmark_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let server = FakeApiServer::start_with(options, false).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client_for(&server).await, "default");
    let p = server.create(&pod("a", "n1", "web")).unwrap();
    let mut s = pods
        .watch(
            &WatchParams::default().fields("spec.nodeName=n9"),
            &p.resource_version().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    // Changes the watch does not see still move the bookmark's resourceVersion.
    server.create(&pod("b", "n1", "web")).unwrap();
    let want = server.resource_version().to_string();
    loop {
        match next(&mut s).await.unwrap() {
            WatchEvent::Bookmark(b) => {
                if b.metadata.resource_version == want {
                    break;
                }
            }
            other => panic!("only bookmarks expected, got {}", describe(&other)),
        }
    }
    // Without allowWatchBookmarks, none come.
    let mut s = pods
        .watch(&WatchParams::default().disable_bookmarks().timeout(1), "0")
        .await
        .unwrap()
        .boxed();
    let mut events = Vec::new();
    while let Some(e) = tokio::time::timeout(DEADLINE, s.next()).await.unwrap() {
        events.push(describe(&e.unwrap()));
    }
    assert_eq!(events, ["ADDED a", "ADDED b"]);
}

#[tokio::test]
async fn objects_that_stop_or_start_matching_selectors_are_deleted_or_added() {
    let server = FakeApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client_for(&server).await, "default");
    server.create(&pod("a", "n1", "web")).unwrap();
    let rv = server.resource_version().to_string();
    let mut by_label = pods
        .watch(&WatchParams::default().labels("app=web"), &rv)
        .await
        .unwrap()
        .boxed();
    let mut by_phase = pods
        .watch(
            &WatchParams::default().fields("status.phase=Pending,spec.nodeName=n1"),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    let relabel = |app: &str| Patch::Merge(json!({"metadata": {"labels": {"app": app}}}));
    pods.patch("a", &PatchParams::default(), &relabel("db"))
        .await
        .unwrap();
    assert_eq!(describe(&next(&mut by_label).await.unwrap()), "DELETED a");
    assert_eq!(describe(&next(&mut by_phase).await.unwrap()), "MODIFIED a");
    pods.patch("a", &PatchParams::default(), &relabel("web"))
        .await
        .unwrap();
    assert_eq!(describe(&next(&mut by_label).await.unwrap()), "ADDED a");
    assert_eq!(describe(&next(&mut by_phase).await.unwrap()), "MODIFIED a");
    pods.patch_status(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    assert_eq!(describe(&next(&mut by_label).await.unwrap()), "MODIFIED a");
    assert_eq!(describe(&next(&mut by_phase).await.unwrap()), "DELETED a");
    let watches: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.verb == Some(Verb::Watch))
        .collect();
    assert_eq!(watches.len(), 2);
    assert_eq!(watches[0].query_param("watch").as_deref(), Some("true"));
    assert_eq!(
        watches[1].query_param("fieldSelector").as_deref(),
        Some("status.phase=Pending,spec.nodeName=n1")
    );
}

#[tokio::test]
async fn streaming_lists_end_with_the_initial_events_bookmark() {
    let server = FakeApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client_for(&server).await, "default");
    for n in ["a", "b"] {
        server.create(&pod(n, "n1", "web")).unwrap();
    }
    let mut w = watcher(pods, watcher::Config::default().streaming_lists()).boxed();
    let mut got = Vec::new();
    loop {
        match next(&mut w).await.unwrap() {
            watcher::Event::InitApply(p) => got.push(p.name_any()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(got, ["a", "b"]);
    let req = server
        .requests()
        .into_iter()
        .find(|r| r.verb == Some(Verb::Watch))
        .unwrap();
    assert_eq!(
        req.query_param("sendInitialEvents").as_deref(),
        Some("true")
    );
    server.create(&pod("c", "n1", "web")).unwrap();
    match next(&mut w).await.unwrap() {
        watcher::Event::Apply(p) => assert_eq!(p.name_any(), "c"),
        other => panic!("expected Apply(c), got {other:?}"),
    }
}

#[tokio::test]
async fn dropped_watches_end_and_resume_without_loss() {
    let server = FakeApiServer::start().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client_for(&server).await, "default");
    let rv = server.resource_version().to_string();
    let mut s = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    server.create(&pod("a", "n1", "web")).unwrap();
    let last = match next(&mut s).await.unwrap() {
        WatchEvent::Added(p) => p.resource_version().unwrap(),
        other => panic!("{}", describe(&other)),
    };
    server.drop_watches();
    assert!(
        tokio::time::timeout(DEADLINE, s.next())
            .await
            .unwrap()
            .is_none()
    );
    server.create(&pod("b", "n1", "web")).unwrap();
    let s = pods
        .watch(&WatchParams::default().timeout(1), &last)
        .await
        .unwrap();
    let names: Vec<String> = s.map_ok(|e| describe(&e)).try_collect().await.unwrap();
    assert_eq!(names, ["ADDED b"]);
}
