//! Probes and lifecycle hooks in the reconciler: the real kubelet against the stateful fake
//! runtime (exec probes and hooks answered by its exec handlers) under paused time.

mod support {
    // Shared by the scenario test files; each uses part of it.
    #[allow(dead_code)]
    pub mod scenario;
}

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ExecAction, LifecycleHandler, Pod, PodCondition, PodReadinessGate, PodStatus, Probe,
    SleepAction,
};
use kubelet_core::runtime::ContainerState;
use kubelet_core::testing::pods::{container, pod};
use kubelet_core::testing::{ContainerBehavior, ContainerMatch, ExecReply, FakeRuntime};
use tokio::time::Instant;

use support::scenario::{IMAGE, Node, runtime};

impl Node {
    fn status(&self, p: &Pod) -> Option<PodStatus> {
        self.reporter
            .last_pod_status(p.metadata.uid.as_deref().unwrap_or_default())
    }

    fn condition(&self, p: &Pod, type_: &str) -> Option<PodCondition> {
        self.status(p)?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == type_)
    }

    fn pod_ready(&self, p: &Pod) -> bool {
        self.condition(p, "Ready")
            .is_some_and(|c| c.status == "True")
    }

    fn container_status(
        &self,
        p: &Pod,
        name: &str,
    ) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
        self.status(p)?
            .container_statuses?
            .into_iter()
            .find(|c| c.name == name)
    }

    fn ready(&self, p: &Pod, name: &str) -> bool {
        self.container_status(p, name).is_some_and(|c| c.ready)
    }

    fn started(&self, p: &Pod, name: &str) -> bool {
        self.container_status(p, name)
            .is_some_and(|c| c.started == Some(true))
    }

    fn restarts(&self, p: &Pod, name: &str) -> i32 {
        self.container_status(p, name)
            .map_or(0, |c| c.restart_count)
    }

    fn messages(&self, reason: &str) -> Vec<String> {
        self.reporter
            .events_with_reason(reason)
            .into_iter()
            .map(|e| e.message)
            .collect()
    }
}

fn exec_probe(command: &str, period: i32, failure: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["sh".into(), "-c".into(), command.into()]),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure),
        ..Default::default()
    }
}

/// Execs whose command line contains `marker` exit 0 while `ok` holds, else 1 with output.
fn scripted(rt: &FakeRuntime, marker: &'static str, ok: Arc<AtomicBool>, calls: Arc<AtomicUsize>) {
    rt.set_exec_handler(ContainerMatch::any(), move |cmd| {
        if !cmd.join(" ").contains(marker) {
            return ExecReply::exit(0);
        }
        calls.fetch_add(1, Ordering::SeqCst);
        if ok.load(Ordering::SeqCst) {
            ExecReply::stdout("fine")
        } else {
            ExecReply::Done(kubelet_core::runtime::ExecResult {
                stdout: b"not yet".to_vec(),
                stderr: Vec::new(),
                exit_code: 1,
            })
        }
    });
}

#[tokio::test(start_paused = true)]
async fn readiness_gates_ready_and_flaps_with_thresholds() {
    let rt = runtime();
    let ok = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    scripted(&rt, "ready-check", ok.clone(), calls.clone());
    let node = Node::start(rt.clone());
    let p = pod("web")
        .container(container("app", IMAGE).with(|c| {
            let mut probe = exec_probe("ready-check", 2, 3);
            probe.success_threshold = Some(2);
            c.readiness_probe = Some(probe);
        }))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(10), "running, probed", |n| {
        n.container_status(&p, "app")
            .and_then(|c| c.state)
            .is_some_and(|s| s.running.is_some())
            && calls.load(Ordering::SeqCst) >= 2
    })
    .await;
    // Running and started (no startup probe), but not ready while the probe fails.
    assert!(node.started(&p, "app"));
    assert!(!node.ready(&p, "app"));
    let cr = node
        .condition(&p, "ContainersReady")
        .expect("ContainersReady");
    assert_eq!(cr.status, "False");
    assert_eq!(cr.reason.as_deref(), Some("ContainersNotReady"));
    assert!(!node.pod_ready(&p));
    let unhealthy = node.messages("Unhealthy");
    assert!(
        unhealthy
            .iter()
            .any(|m| m == "Readiness probe failed: not yet"),
        "{unhealthy:?}"
    );

    // Two successes in a row (successThreshold 2) make it ready.
    ok.store(true, Ordering::SeqCst);
    let flipped = Instant::now();
    node.until(Duration::from_secs(10), "ready", |n| n.pod_ready(&p))
        .await;
    let took = flipped.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_secs(5),
        "ready after {took:?}"
    );
    assert!(node.ready(&p, "app"));

    // Two failures stay under failureThreshold 3: still ready.
    ok.store(false, Ordering::SeqCst);
    let before = calls.load(Ordering::SeqCst);
    node.until(Duration::from_secs(10), "two failed probes", |_| {
        calls.load(Ordering::SeqCst) >= before + 2
    })
    .await;
    assert!(node.pod_ready(&p), "two failures must not flip readiness");
    node.until(Duration::from_secs(10), "not ready again", |n| {
        !n.pod_ready(&p)
    })
    .await;
    assert!(calls.load(Ordering::SeqCst) >= before + 3);
    // Readiness never restarts a container.
    assert_eq!(node.restarts(&p, "app"), 0);
    assert_eq!(rt.container_instances_of("web", "app").len(), 1);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn initial_delay_holds_the_first_probe() {
    let rt = runtime();
    let ok = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    scripted(&rt, "ready-check", ok, calls.clone());
    let node = Node::start(rt.clone());
    let p = pod("slow")
        .container(container("app", IMAGE).with(|c| {
            let mut probe = exec_probe("ready-check", 5, 3);
            probe.initial_delay_seconds = Some(20);
            c.readiness_probe = Some(probe);
        }))
        .build();
    let sent = Instant::now();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(10), "running", |n| {
        n.container_status(&p, "app")
            .and_then(|c| c.state)
            .is_some_and(|s| s.running.is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "probed before initialDelaySeconds"
    );
    assert!(!node.pod_ready(&p));
    node.until(Duration::from_secs(30), "ready", |n| n.pod_ready(&p))
        .await;
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_secs(20) && took < Duration::from_secs(23),
        "ready after {took:?}"
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn startup_probe_gates_liveness_and_readiness() {
    let rt = runtime();
    let started_ok = Arc::new(AtomicBool::new(false));
    let startup_calls = Arc::new(AtomicUsize::new(0));
    let other_calls = Arc::new(AtomicUsize::new(0));
    {
        let started_ok = started_ok.clone();
        let startup_calls = startup_calls.clone();
        let other_calls = other_calls.clone();
        rt.set_exec_handler(ContainerMatch::any(), move |cmd| {
            let line = cmd.join(" ");
            if line.contains("startup-check") {
                startup_calls.fetch_add(1, Ordering::SeqCst);
                return ExecReply::exit(if started_ok.load(Ordering::SeqCst) {
                    0
                } else {
                    1
                });
            }
            other_calls.fetch_add(1, Ordering::SeqCst);
            ExecReply::exit(0)
        });
    }
    let node = Node::start(rt.clone());
    let p = pod("gated")
        .container(container("app", IMAGE).with(|c| {
            c.startup_probe = Some(exec_probe("startup-check", 1, 30));
            c.liveness_probe = Some(exec_probe("live-check", 1, 1));
            c.readiness_probe = Some(exec_probe("ready-check", 1, 1));
        }))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(
        Duration::from_secs(15),
        "startup probed a few times",
        |_| startup_calls.load(Ordering::SeqCst) >= 5,
    )
    .await;
    assert_eq!(other_calls.load(Ordering::SeqCst), 0, "gated probes ran");
    assert!(!node.started(&p, "app"));
    assert!(!node.ready(&p, "app"));

    started_ok.store(true, Ordering::SeqCst);
    node.until(Duration::from_secs(10), "started and ready", |n| {
        n.started(&p, "app") && n.ready(&p, "app") && n.pod_ready(&p)
    })
    .await;
    let after = startup_calls.load(Ordering::SeqCst);
    node.until(
        Duration::from_secs(10),
        "liveness and readiness probing",
        |_| other_calls.load(Ordering::SeqCst) >= 4,
    )
    .await;
    // The startup probe stops once it succeeded.
    assert_eq!(startup_calls.load(Ordering::SeqCst), after);
    assert_eq!(node.restarts(&p, "app"), 0);
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_startup_probe_restarts_the_container() {
    let rt = runtime();
    rt.set_exec_handler(ContainerMatch::any(), |_| ExecReply::exit(1));
    let node = Node::start(rt.clone());
    let p = pod("nostart")
        .container(container("app", IMAGE).with(|c| {
            c.startup_probe = Some(exec_probe("startup-check", 1, 3));
        }))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(20), "restarted", |n| {
        n.restarts(&p, "app") >= 1
    })
    .await;
    let killing = node.messages("Killing");
    assert!(
        killing
            .iter()
            .any(|m| m == "Container app failed startup probe, will be restarted"),
        "{killing:?}"
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn liveness_failure_restarts_with_backoff() {
    let rt = runtime();
    rt.set_exec_handler(ContainerMatch::any(), |_| {
        ExecReply::Done(kubelet_core::runtime::ExecResult {
            stdout: b"dead".to_vec(),
            stderr: Vec::new(),
            exit_code: 1,
        })
    });
    let node = Node::start(rt.clone());
    let p = pod("sick")
        .container(container("app", IMAGE).with(|c| {
            c.liveness_probe = Some(exec_probe("live-check", 1, 1));
        }))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(300), "five instances", |n| {
        n.runtime.container_instances_of("sick", "app").len() >= 5
    })
    .await;
    let mut starts: Vec<i64> = rt
        .container_instances_of("sick", "app")
        .iter()
        .map(|c| c.created_at)
        .collect();
    starts.sort();
    let gaps: Vec<i64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000_000)
        .collect();
    // Each instance lives about a probe period (1 s) before it is killed (it exits at once on
    // SIGTERM). As with the reference, which backs off from the newest exited instance: the
    // first two restarts follow at once (no exited instance, then a first backoff entry of
    // 10 s that counts from the first exit, long past); the third waits out those 10 s from
    // the second exit, the fourth 20 s.
    assert!(gaps[0] <= 3 && gaps[1] <= 3, "gaps {gaps:?}");
    assert!(gaps[2] >= 10 && gaps[2] <= 13, "gaps {gaps:?}");
    assert!(gaps[3] >= 20 && gaps[3] <= 23, "gaps {gaps:?}");
    let killing = node.messages("Killing");
    assert!(
        killing
            .iter()
            .any(|m| m == "Container app failed liveness probe, will be restarted"),
        "{killing:?}"
    );
    let unhealthy = node.messages("Unhealthy");
    assert!(
        unhealthy.iter().any(|m| m == "Liveness probe failed: dead"),
        "{unhealthy:?}"
    );
    node.until(Duration::from_secs(60), "CrashLoopBackOff shown", |n| {
        n.container_status(&p, "app")
            .and_then(|c| c.state?.waiting?.reason)
            .as_deref()
            == Some("CrashLoopBackOff")
    })
    .await;
    // Probe runs are counted for prober_probe_total.
    let counts = node.handle.probe_counts();
    let failed: u64 = counts
        .iter()
        .filter(|(k, _)| {
            k.probe_type == "Liveness"
                && k.result == "failed"
                && k.container == "app"
                && k.pod == "sick"
                && k.namespace == "default"
        })
        .map(|(_, v)| *v)
        .sum();
    assert!(failed >= 5, "{counts:?}");
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_liveness_kill_uses_the_probe_grace_period() {
    let rt = runtime();
    rt.set_behavior(
        ContainerMatch::container("graceful", "app"),
        ContainerBehavior::forever().ignore_term(),
    );
    let fail = Arc::new(AtomicBool::new(false));
    {
        let fail = fail.clone();
        rt.set_exec_handler(ContainerMatch::any(), move |_| {
            ExecReply::exit(if fail.load(Ordering::SeqCst) { 1 } else { 0 })
        });
    }
    let node = Node::start(rt.clone());
    let p = pod("graceful")
        .grace_period(60)
        .container(container("app", IMAGE).with(|c| {
            let mut probe = exec_probe("live-check", 1, 1);
            probe.termination_grace_period_seconds = Some(5);
            c.liveness_probe = Some(probe);
        }))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(10), "running", |n| {
        n.runtime.running_containers().len() == 1
    })
    .await;
    fail.store(true, Ordering::SeqCst);
    node.until(Duration::from_secs(30), "the first instance exited", |n| {
        n.runtime
            .container_instances_of("graceful", "app")
            .iter()
            .any(|c| c.state == ContainerState::Exited)
    })
    .await;
    let first = rt
        .container_instances_of("graceful", "app")
        .into_iter()
        .find(|c| c.state == ContainerState::Exited)
        .expect("exited");
    // SIGTERM ignored: SIGKILL after the probe's 5 s, not the pod's 60 s.
    assert_eq!(first.exit_code, 137);
    let ran = (first.finished_at - first.started_at) / 1_000_000_000;
    assert!((5..=8).contains(&ran), "ran {ran}s");
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_exec_probe_hanging_past_its_timeout_fails() {
    let rt = runtime();
    rt.set_exec_handler(ContainerMatch::any(), |_| ExecReply::Hang);
    let node = Node::start(rt.clone());
    let p = pod("hang")
        .container(container("app", IMAGE).with(|c| {
            let mut probe = exec_probe("sleep 100", 5, 1);
            probe.timeout_seconds = Some(2);
            c.readiness_probe = Some(probe);
        }))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(20), "a timeout event", |n| {
        !n.messages("Unhealthy").is_empty()
    })
    .await;
    let unhealthy = node.messages("Unhealthy");
    assert_eq!(
        unhealthy[0], "Readiness probe failed: command \"sh -c sleep 100\" timed out",
        "{unhealthy:?}"
    );
    assert!(!node.ready(&p, "app"));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn readiness_gates_hold_the_ready_condition() {
    let rt = runtime();
    let node = Node::start(rt.clone());
    let p = pod("gates")
        .container(container("app", IMAGE))
        .spec(|s| {
            s.readiness_gates = Some(vec![PodReadinessGate {
                condition_type: "example.com/lb".into(),
            }])
        })
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(10), "containers ready", |n| {
        n.condition(&p, "ContainersReady")
            .is_some_and(|c| c.status == "True")
    })
    .await;
    let ready = node.condition(&p, "Ready").expect("Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason.as_deref(), Some("ReadinessGatesNotReady"));
    // A pod whose gate's condition (set by its controller) is True is Ready.
    let mut ok = pod("gates-ok")
        .container(container("app", IMAGE))
        .spec(|s| {
            s.readiness_gates = Some(vec![PodReadinessGate {
                condition_type: "example.com/lb".into(),
            }])
        })
        .build();
    ok.status = Some(PodStatus {
        conditions: Some(vec![PodCondition {
            type_: "example.com/lb".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    node.pods.snapshot(vec![p.clone(), ok.clone()]);
    node.until(Duration::from_secs(10), "Ready", |n| n.pod_ready(&ok))
        .await;
    assert!(!node.pod_ready(&p));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_post_start_hook_kills_the_container() {
    let rt = runtime();
    rt.set_exec_handler(ContainerMatch::any(), |cmd| {
        if cmd.join(" ").contains("post-start") {
            ExecReply::Done(kubelet_core::runtime::ExecResult {
                stdout: Vec::new(),
                stderr: b"boom".to_vec(),
                exit_code: 2,
            })
        } else {
            ExecReply::exit(0)
        }
    });
    let node = Node::start(rt.clone());
    let p = pod("hooked")
        .container(container("app", IMAGE).with(|c| {
            c.lifecycle = Some(k8s_openapi::api::core::v1::Lifecycle {
                post_start: Some(LifecycleHandler {
                    exec: Some(ExecAction {
                        command: Some(vec!["post-start".into()]),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(
        Duration::from_secs(30),
        "restarted after the hook failed",
        |n| n.restarts(&p, "app") >= 1,
    )
    .await;
    let failed = node.messages("FailedPostStartHook");
    assert!(
        failed
            .iter()
            .any(|m| m.contains("post-start") && m.contains("boom")),
        "{failed:?}"
    );
    let killing = node.messages("Killing");
    assert!(
        killing.iter().any(|m| m == "FailedPostStartHook"),
        "{killing:?}"
    );
    let first = rt
        .container_instances_of("hooked", "app")
        .into_iter()
        .find(|c| c.state == ContainerState::Exited)
        .expect("the first instance exited");
    assert_eq!(first.exit_code, 0, "stopped with SIGTERM");
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_pre_stop_hook_runs_inside_the_grace_period() {
    let rt = runtime();
    rt.set_behavior(
        ContainerMatch::container("stopper", "app"),
        ContainerBehavior::forever().ignore_term(),
    );
    let hook_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    {
        let hook_at = hook_at.clone();
        rt.set_exec_handler(ContainerMatch::any(), move |cmd| {
            if cmd.join(" ").contains("pre-stop") {
                *hook_at.lock().unwrap() = Some(Instant::now());
                // The hook takes 4 s of the 10 s grace period.
                return ExecReply::After(Duration::from_secs(4), Default::default());
            }
            ExecReply::exit(0)
        });
    }
    let node = Node::start(rt.clone());
    let p = pod("stopper")
        .grace_period(10)
        .container(container("app", IMAGE).with(|c| {
            c.lifecycle = Some(k8s_openapi::api::core::v1::Lifecycle {
                pre_stop: Some(LifecycleHandler {
                    exec: Some(ExecAction {
                        command: Some(vec!["pre-stop".into()]),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(10), "running", |n| {
        n.runtime.running_containers().len() == 1
    })
    .await;
    let removed = Instant::now();
    node.pods.snapshot(vec![]);
    node.until(Duration::from_secs(60), "container stopped", |n| {
        n.runtime.running_containers().is_empty()
    })
    .await;
    let took = removed.elapsed();
    let hook = hook_at.lock().unwrap().expect("the preStop hook ran");
    assert!(hook - removed < Duration::from_secs(2), "hook ran late");
    // 4 s of hook, then SIGTERM (ignored) and SIGKILL after the 6 s left: 10 s in all, not
    // 14 s.
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(12),
        "stopped after {took:?}"
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_pre_stop_hook_longer_than_the_grace_period_is_cut_short() {
    let rt = runtime();
    let node = Node::start(rt.clone());
    let p = pod("sleeper")
        .grace_period(5)
        .container(container("app", IMAGE).with(|c| {
            c.lifecycle = Some(k8s_openapi::api::core::v1::Lifecycle {
                pre_stop: Some(LifecycleHandler {
                    sleep: Some(SleepAction { seconds: 100 }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(10), "running", |n| {
        n.runtime.running_containers().len() == 1
    })
    .await;
    let removed = Instant::now();
    node.pods.snapshot(vec![]);
    node.until(Duration::from_secs(60), "container stopped", |n| {
        n.runtime.running_containers().is_empty()
    })
    .await;
    // 5 s of hook, then the 2 s minimum: well before the hook's 100 s.
    let took = removed.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(9),
        "stopped after {took:?}"
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_pre_stop_hook_is_reported_and_the_container_still_stops() {
    let rt = runtime();
    rt.set_exec_handler(ContainerMatch::any(), |_| ExecReply::exit(7));
    let node = Node::start(rt.clone());
    let p = pod("badstop")
        .container(container("app", IMAGE).with(|c| {
            c.lifecycle = Some(k8s_openapi::api::core::v1::Lifecycle {
                pre_stop: Some(LifecycleHandler {
                    exec: Some(ExecAction {
                        command: Some(vec!["false".into()]),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(10), "running", |n| {
        n.runtime.running_containers().len() == 1
    })
    .await;
    node.pods.snapshot(vec![]);
    node.until(Duration::from_secs(60), "stopped", |n| {
        n.runtime.running_containers().is_empty()
    })
    .await;
    node.until(Duration::from_secs(10), "FailedPreStopHook", |n| {
        !n.messages("FailedPreStopHook").is_empty()
    })
    .await;
    let failed = node.messages("FailedPreStopHook");
    assert!(failed[0].contains("exited with 7"), "{failed:?}");
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn probe_workers_stop_with_their_pod() {
    let rt = runtime();
    let ok = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    scripted(&rt, "ready-check", ok, calls.clone());
    let node = Node::start(rt.clone());
    let p = pod("short")
        .container(container("app", IMAGE).with(|c| {
            c.readiness_probe = Some(exec_probe("ready-check", 1, 3));
        }))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(10), "ready", |n| n.pod_ready(&p))
        .await;
    node.pods.snapshot(vec![]);
    node.until(Duration::from_secs(30), "removed", |n| {
        n.reporter
            .removed_pods()
            .contains(&p.metadata.uid.clone().unwrap_or_default())
    })
    .await;
    let after = calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(calls.load(Ordering::SeqCst), after, "probed a removed pod");
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_hanging_probe_does_not_block_the_pod_worker() {
    let rt = runtime();
    rt.set_exec_handler(ContainerMatch::any(), |_| ExecReply::Hang);
    rt.set_behavior(
        ContainerMatch::container("mixed", "crasher"),
        ContainerBehavior::exit(1, Duration::from_secs(1)),
    );
    let node = Node::start(rt.clone());
    let p = pod("mixed")
        .container(container("app", IMAGE).with(|c| {
            let mut probe = exec_probe("hang", 1, 3);
            probe.timeout_seconds = Some(300);
            c.liveness_probe = Some(probe.clone());
            c.readiness_probe = Some(probe);
        }))
        .container(container("crasher", IMAGE))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    // While both probes of `app` hang for minutes, the pod worker keeps restarting `crasher`
    // on CrashLoopBackOff's schedule (at once, then 10 s after the second exit).
    node.until(Duration::from_secs(30), "crasher restarted twice", |n| {
        n.restarts(&p, "crasher") >= 2
    })
    .await;
    assert_eq!(node.restarts(&p, "app"), 0);
    assert!(!node.ready(&p, "app"));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_invalid_probe_is_reported_with_its_field_and_not_run() {
    let rt = runtime();
    let calls = Arc::new(AtomicUsize::new(0));
    scripted(
        &rt,
        "live-check",
        Arc::new(AtomicBool::new(true)),
        calls.clone(),
    );
    let node = Node::start(rt.clone());
    let p = pod("invalid")
        .container(container("app", IMAGE).with(|c| {
            let mut probe = exec_probe("live-check", 1, 3);
            probe.success_threshold = Some(2);
            c.liveness_probe = Some(probe);
        }))
        .build();
    node.pods.snapshot(vec![p.clone()]);
    node.until(Duration::from_secs(10), "a Failed event", |n| {
        !n.messages("Failed").is_empty()
    })
    .await;
    assert_eq!(
        node.messages("Failed"),
        vec![
            "Error: spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"
                .to_string()
        ]
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Reported once, not on every sync.
    assert_eq!(node.messages("Failed").len(), 1);
    node.shutdown().await;
}
