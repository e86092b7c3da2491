//! `kubelet_core::logs` on real files: the CRI log format as the runtime writes it, read as
//! `kubectl logs` asks through the kubelet.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kubelet_core::logs::{
    ContainerRunning, LogFileError, LogOptions, LogStream, container_log_stream, log_file_for,
    open_container_log,
};

/// How long any condition may take before a test fails.
const DEADLINE: Duration = Duration::from_secs(30);

fn rec(ts: &str, stream: &str, tag: &str, content: &str) -> String {
    format!("{ts} {stream} {tag} {content}\n")
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn opts(query: &str) -> LogOptions {
    LogOptions::from_query(query).unwrap_or_else(|e| panic!("query {query:?}: {e}"))
}

/// Reads a whole non-follow stream.
async fn read_all(path: &Path, opts: LogOptions) -> String {
    let mut s = container_log_stream(path.to_path_buf(), opts, ContainerRunning::exited());
    let mut out = Vec::new();
    let collect = async {
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap_or_else(|e| panic!("read: {e}")));
        }
    };
    tokio::time::timeout(DEADLINE, collect)
        .await
        .unwrap_or_else(|_| panic!("stream did not end"));
    String::from_utf8(out).unwrap_or_else(|e| panic!("not UTF-8: {e}"))
}

/// A file with five records across both streams, one second apart.
fn five_lines(dir: &Path) -> PathBuf {
    let path = dir.join("0.log");
    let mut text = String::new();
    for i in 1..=5 {
        let stream = if i % 2 == 0 { "stderr" } else { "stdout" };
        text += &rec(
            &format!("2024-05-01T10:00:0{i}.{i}00000000Z"),
            stream,
            "F",
            &format!("line {i}"),
        );
    }
    append(&path, &text);
    path
}

#[tokio::test]
async fn reads_whole_file() {
    let dir = tempdir();
    let path = five_lines(dir.path());
    assert_eq!(
        read_all(&path, opts("")).await,
        "line 1\nline 2\nline 3\nline 4\nline 5\n"
    );
}

#[tokio::test]
async fn tail_lines() {
    let dir = tempdir();
    let path = five_lines(dir.path());
    let cases = [
        ("tailLines=0", ""),
        ("tailLines=2", "line 4\nline 5\n"),
        ("tail=1", "line 5\n"),
        ("tailLines=5", "line 1\nline 2\nline 3\nline 4\nline 5\n"),
        ("tailLines=100", "line 1\nline 2\nline 3\nline 4\nline 5\n"),
        ("tail=all", "line 1\nline 2\nline 3\nline 4\nline 5\n"),
    ];
    for (query, want) in cases {
        assert_eq!(read_all(&path, opts(query)).await, want, "{query}");
    }
}

#[tokio::test]
async fn tail_of_a_large_file() {
    let dir = tempdir();
    let path = dir.path().join("0.log");
    let mut text = String::new();
    for i in 0..20_000 {
        text += &rec("2024-05-01T10:00:00Z", "stdout", "F", &format!("{i:0>40}"));
    }
    append(&path, &text);
    let want = format!("{:0>40}\n{:0>40}\n{:0>40}\n", 19_997, 19_998, 19_999);
    assert_eq!(read_all(&path, opts("tailLines=3")).await, want);
}

#[tokio::test]
async fn since_time_and_seconds() {
    let dir = tempdir();
    let path = five_lines(dir.path());
    assert_eq!(
        read_all(&path, opts("sinceTime=2024-05-01T10:00:03Z")).await,
        "line 3\nline 4\nline 5\n"
    );
    assert_eq!(
        read_all(&path, opts("sinceTime=2024-05-01T12:00:03%2B02:00")).await,
        "line 3\nline 4\nline 5\n"
    );
    // The records are from 2024: all older than a minute ago.
    assert_eq!(read_all(&path, opts("sinceSeconds=60")).await, "");

    let recent = dir.path().join("1.log");
    let now = jiff::Timestamp::now();
    let old = now - jiff::SignedDuration::from_secs(3600);
    append(
        &recent,
        &(rec(&old.to_string(), "stdout", "F", "an hour ago")
            + &rec(&now.to_string(), "stdout", "F", "just now")),
    );
    assert_eq!(
        read_all(&recent, opts("sinceSeconds=600")).await,
        "just now\n"
    );
}

#[tokio::test]
async fn timestamps() {
    let dir = tempdir();
    let path = five_lines(dir.path());
    assert_eq!(
        read_all(&path, opts("timestamps=true&tailLines=2")).await,
        "2024-05-01T10:00:04.4Z line 4\n2024-05-01T10:00:05.5Z line 5\n"
    );
    let zoned = dir.path().join("1.log");
    append(
        &zoned,
        &rec("2024-05-01T12:00:00.000000100+02:00", "stdout", "F", "x"),
    );
    assert_eq!(
        read_all(&zoned, opts("timestamps=true")).await,
        "2024-05-01T12:00:00.0000001+02:00 x\n"
    );
}

#[tokio::test]
async fn limit_bytes() {
    let dir = tempdir();
    let path = five_lines(dir.path());
    let cases = [
        ("limitBytes=1", "l"),
        ("limitBytes=7", "line 1\n"),
        ("limitBytes=10", "line 1\nlin"),
        (
            "limitBytes=1000",
            "line 1\nline 2\nline 3\nline 4\nline 5\n",
        ),
        ("limitBytes=12&timestamps=true", "2024-05-01T1"),
        ("limitBytes=10&stream=Stderr", "line 2\nlin"),
    ];
    for (query, want) in cases {
        assert_eq!(read_all(&path, opts(query)).await, want, "{query}");
    }
}

#[tokio::test]
async fn partial_records_make_one_line() {
    let dir = tempdir();
    let path = dir.path().join("0.log");
    append(
        &path,
        &(rec("2024-05-01T10:00:01Z", "stdout", "P", "a long ")
            + &rec("2024-05-01T10:00:02Z", "stdout", "P", "line in ")
            + &rec("2024-05-01T10:00:03Z", "stdout", "F", "three parts")
            + &rec("2024-05-01T10:00:04Z", "stdout", "F", "next")),
    );
    assert_eq!(
        read_all(&path, opts("")).await,
        "a long line in three parts\nnext\n"
    );
    assert_eq!(
        read_all(&path, opts("timestamps=true")).await,
        "2024-05-01T10:00:01Z a long line in three parts\n2024-05-01T10:00:04Z next\n"
    );
    // A partial record of the other stream in between does not take the prefix away from
    // the next stderr line.
    let mixed = dir.path().join("1.log");
    append(
        &mixed,
        &(rec("2024-05-01T10:00:01Z", "stdout", "P", "out ")
            + &rec("2024-05-01T10:00:02Z", "stderr", "F", "err")
            + &rec("2024-05-01T10:00:03Z", "stdout", "F", "done")),
    );
    assert_eq!(
        read_all(&mixed, opts("timestamps=true&stream=Stdout")).await,
        "2024-05-01T10:00:01Z out done\n"
    );
    assert_eq!(
        read_all(&mixed, opts("timestamps=true&stream=Stderr")).await,
        "2024-05-01T10:00:02Z err\n"
    );
}

#[tokio::test]
async fn stream_selection() {
    let dir = tempdir();
    let path = five_lines(dir.path());
    let cases = [
        ("stream=Stdout", "line 1\nline 3\nline 5\n"),
        ("stream=Stderr", "line 2\nline 4\n"),
        ("stream=All", "line 1\nline 2\nline 3\nline 4\nline 5\n"),
    ];
    for (query, want) in cases {
        assert_eq!(read_all(&path, opts(query)).await, want, "{query}");
    }
    assert_eq!(opts("stream=Stderr").stream, LogStream::Stderr);
}

#[tokio::test]
async fn malformed_lines_are_skipped() {
    let dir = tempdir();
    let path = dir.path().join("0.log");
    append(
        &path,
        &(rec("2024-05-01T10:00:01Z", "stdout", "F", "one")
            + "garbage\n"
            + "2024-05-01T10:00:02Z stdin F nope\n"
            + "not-a-time stdout F nope\n"
            + &rec("2024-05-01T10:00:03Z", "stderr", "F", "two")
            + "2024-05-01T10:00:04Z stdout F no newline at the end"),
    );
    assert_eq!(
        read_all(&path, opts("")).await,
        "one\ntwo\nno newline at the end"
    );
    // As the reference, the incomplete last line is not counted by a tail.
    assert_eq!(read_all(&path, opts("tailLines=1")).await, "two\n");
}

#[tokio::test]
async fn missing_file() {
    let dir = tempdir();
    let path = dir.path().join("0.log");
    match open_container_log(path.clone(), opts(""), ContainerRunning::exited()).await {
        Ok(_) => panic!("opened a missing file"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}"),
    }
    let mut s = container_log_stream(path, opts(""), ContainerRunning::exited());
    assert!(matches!(s.next().await, Some(Err(_))));
    assert!(s.next().await.is_none());
}

#[test]
fn previous_and_current_files() {
    let dir = tempdir();
    let c = dir.path().join("app");
    std::fs::create_dir_all(&c).unwrap_or_else(|e| panic!("mkdir: {e}"));
    append(&c.join("0.log"), "");
    append(&c.join("1.log"), "");

    let ok = |restart, previous| {
        log_file_for(dir.path(), "app", restart, previous)
            .unwrap_or_else(|e| panic!("restart {restart} previous {previous}: {e}"))
    };
    assert_eq!(ok(1, false), c.join("1.log"));
    assert_eq!(ok(1, true), c.join("0.log"));
    assert_eq!(ok(0, false), c.join("0.log"));

    assert!(matches!(
        log_file_for(dir.path(), "app", 0, true),
        Err(LogFileError::NoPreviousRun(name)) if name == "app"
    ));
    assert!(matches!(
        log_file_for(dir.path(), "app", 3, true),
        Err(LogFileError::NotFound(p)) if p == c.join("2.log")
    ));
    for bad in ["", ".", "..", "../app", "a/b"] {
        assert!(
            matches!(
                log_file_for(dir.path(), bad, 1, false),
                Err(LogFileError::InvalidContainerName(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        kubelet_core::logs::pod_log_dir(Path::new("/var/log/pods"), "ns", "web", "u-1"),
        Path::new("/var/log/pods/ns_web_u-1")
    );
}

#[tokio::test]
async fn previous_run_is_read_to_its_end() {
    let dir = tempdir();
    let c = dir.path().join("app");
    std::fs::create_dir_all(&c).unwrap_or_else(|e| panic!("mkdir: {e}"));
    append(
        &c.join("0.log"),
        &rec("2024-05-01T10:00:01Z", "stdout", "F", "first run"),
    );
    append(
        &c.join("1.log"),
        &rec("2024-05-01T10:01:01Z", "stdout", "F", "second run"),
    );
    let o = opts("previous=true&follow=true");
    let path =
        log_file_for(dir.path(), "app", 1, o.previous).unwrap_or_else(|e| panic!("previous: {e}"));
    // A previous run has exited: even a follow ends at the end of its file.
    assert_eq!(read_all(&path, o).await, "first run\n");
}

/// A follow in progress: the reader runs in a task, its output collects in `out`.
struct Follower {
    out: Arc<Mutex<Vec<u8>>>,
    running: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Follower {
    fn start(path: &Path, opts: LogOptions) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let check = ContainerRunning::new(move || {
            let flag = flag.clone();
            async move { flag.load(Ordering::SeqCst) }
        });
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let mut s = container_log_stream(path.to_path_buf(), opts, check);
        let task = tokio::spawn(async move {
            while let Some(chunk) = s.next().await {
                let chunk = chunk?;
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&chunk);
            }
            Ok(())
        });
        Follower { out, running, task }
    }

    fn output(&self) -> String {
        let out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Waits until the output is `want`.
    async fn wait_for(&self, want: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while self.output() != want {
            if tokio::time::Instant::now() > deadline {
                panic!("output {:?}, want {want:?}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The container exits; the stream must end.
    async fn exit(self) -> String {
        self.running.store(false, Ordering::SeqCst);
        match tokio::time::timeout(DEADLINE, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => panic!("stream failed: {e}"),
            Ok(Err(e)) => panic!("reader task: {e}"),
            Err(_) => panic!("follow did not end after the container exited"),
        }
        let out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[tokio::test]
async fn follow_until_the_container_exits() {
    let dir = tempdir();
    let path = dir.path().join("0.log");
    append(&path, &rec("2024-05-01T10:00:00Z", "stdout", "F", "before"));
    let f = Follower::start(&path, opts("follow=true"));
    f.wait_for("before\n").await;

    // A writer appends while the reader follows, with a line in two parts written apart.
    let writer_path = path.clone();
    let writer = tokio::spawn(async move {
        for i in 0..20 {
            append(
                &writer_path,
                &rec("2024-05-01T10:00:01Z", "stdout", "F", &format!("n{i}")),
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        append(&writer_path, "2024-05-01T10:00:02Z stderr P half a line, ");
        tokio::time::sleep(Duration::from_millis(50)).await;
        append(&writer_path, "\n");
        append(
            &writer_path,
            &rec("2024-05-01T10:00:02Z", "stderr", "F", "the rest"),
        );
    });
    let mut want = String::from("before\n");
    for i in 0..20 {
        want += &format!("n{i}\n");
    }
    want += "half a line, the rest\n";
    f.wait_for(&want).await;
    if let Err(e) = writer.await {
        panic!("writer: {e}");
    }

    // The last line is written just before the exit: still read.
    append(
        &path,
        &rec("2024-05-01T10:00:03Z", "stdout", "F", "last words"),
    );
    want += "last words\n";
    assert_eq!(f.exit().await, want);
}

#[tokio::test]
async fn follow_with_tail_and_timestamps() {
    let dir = tempdir();
    let path = five_lines(dir.path());
    let f = Follower::start(&path, opts("follow=1&tailLines=1&timestamps=true"));
    f.wait_for("2024-05-01T10:00:05.5Z line 5\n").await;
    append(&path, &rec("2024-05-01T10:00:06Z", "stdout", "F", "line 6"));
    let want = "2024-05-01T10:00:05.5Z line 5\n2024-05-01T10:00:06Z line 6\n";
    f.wait_for(want).await;
    assert_eq!(f.exit().await, want);
}

#[tokio::test]
async fn follow_stops_at_limit_bytes() {
    let dir = tempdir();
    let path = dir.path().join("0.log");
    append(&path, &rec("2024-05-01T10:00:00Z", "stdout", "F", "abc"));
    let running = ContainerRunning::new(|| async { true });
    let mut s = container_log_stream(path.clone(), opts("follow=true&limitBytes=6"), running);
    append(&path, &rec("2024-05-01T10:00:01Z", "stdout", "F", "defgh"));
    let mut out = Vec::new();
    let collect = async {
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap_or_else(|e| panic!("read: {e}")));
        }
    };
    tokio::time::timeout(DEADLINE, collect)
        .await
        .unwrap_or_else(|_| panic!("follow did not stop at the byte limit"));
    assert_eq!(out, b"abc\nde");
}

#[tokio::test]
async fn follow_across_rotation() {
    let dir = tempdir();
    let path = dir.path().join("0.log");
    append(&path, &rec("2024-05-01T10:00:00Z", "stdout", "F", "old 1"));
    let f = Follower::start(&path, opts("follow=true"));
    f.wait_for("old 1\n").await;

    // The kubelet renames the file; the runtime still writes to it until it reopens the
    // path (ReopenContainerLog), which creates a new file there.
    let rotated = dir.path().join("0.log.20240501-100001");
    std::fs::rename(&path, &rotated).unwrap_or_else(|e| panic!("rename: {e}"));
    append(
        &rotated,
        &rec("2024-05-01T10:00:01Z", "stdout", "F", "old 2"),
    );
    f.wait_for("old 1\nold 2\n").await;
    append(&path, &rec("2024-05-01T10:00:02Z", "stdout", "F", "new 1"));
    f.wait_for("old 1\nold 2\nnew 1\n").await;
    append(&path, &rec("2024-05-01T10:00:03Z", "stderr", "F", "new 2"));
    f.wait_for("old 1\nold 2\nnew 1\nnew 2\n").await;

    // Once more, all at once: the old file gets a last line after the rename and the new
    // file is written right away; the old file's end still comes first.
    let rotated2 = dir.path().join("0.log.20240501-100004");
    std::fs::rename(&path, &rotated2).unwrap_or_else(|e| panic!("rename: {e}"));
    append(
        &rotated2,
        &rec("2024-05-01T10:00:04Z", "stdout", "F", "old tail"),
    );
    append(&path, &rec("2024-05-01T10:00:05Z", "stdout", "F", "newer"));
    let want = "old 1\nold 2\nnew 1\nnew 2\nold tail\nnewer\n";
    f.wait_for(want).await;
    assert_eq!(f.exit().await, want);
}

#[tokio::test]
async fn follow_across_truncation() {
    let dir = tempdir();
    let path = dir.path().join("0.log");
    append(
        &path,
        &(rec(
            "2024-05-01T10:00:00Z",
            "stdout",
            "F",
            "a fairly long first line",
        ) + &rec("2024-05-01T10:00:00Z", "stdout", "F", "and a second one")),
    );
    let f = Follower::start(&path, opts("follow=true"));
    f.wait_for("a fairly long first line\nand a second one\n")
        .await;
    // Truncated in place (copytruncate), then written again from the start.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("truncate: {e}"));
    append(&path, &rec("2024-05-01T10:00:01Z", "stdout", "F", "again"));
    let want = "a fairly long first line\nand a second one\nagain\n";
    f.wait_for(want).await;
    assert_eq!(f.exit().await, want);
}

#[tokio::test]
async fn follow_of_an_exited_container_ends_at_the_end() {
    let dir = tempdir();
    let path = five_lines(dir.path());
    assert_eq!(
        read_all(&path, opts("follow=true&tailLines=2")).await,
        "line 4\nline 5\n"
    );
}
