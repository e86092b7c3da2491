//! The stream of one container's log output, read from its CRI log file.

use std::io::{self, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::ContainerRunning;
use super::cri::{format_rfc3339_nano, parse_record};
use super::options::{LogOptions, RecordStream};
use super::tail::tail_start;

/// Output is handed out in chunks of about this size (or less at the end of the file).
const CHUNK: usize = 32 * 1024;
/// The read buffer over the log file.
const READ_BUF: usize = 64 * 1024;
/// How long a follower waits for a file event before looking again anyway (the reference's
/// force-check period), and how often it looks when no watch could be set up.
const POLL_WATCHED: Duration = Duration::from_secs(1);
const POLL_UNWATCHED: Duration = Duration::from_millis(250);

/// Streams the output of the container whose CRI log file is `path`, as `opts` asks. The
/// file is opened (and the tail located) when the stream is first polled; an error doing so
/// is the stream's only item. See [`open_container_log`] to get that error up front.
pub fn container_log_stream(
    path: PathBuf,
    opts: LogOptions,
    running: ContainerRunning,
) -> BoxStream<'static, io::Result<Bytes>> {
    stream::once(open_container_log(path, opts, running))
        .flat_map(|opened| match opened {
            Ok(s) => s,
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        })
        .boxed()
}

/// As [`container_log_stream`], but opens the file and locates the tail before returning, so
/// that a missing file is an error the caller can answer with a status code.
pub async fn open_container_log(
    path: PathBuf,
    opts: LogOptions,
    running: ContainerRunning,
) -> io::Result<BoxStream<'static, io::Result<Bytes>>> {
    let reader = LogReader::open(path, opts, running).await?;
    Ok(stream::unfold(reader, |mut r| async move {
        match r.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), r)),
            Ok(None) => None,
            Err(e) => {
                r.done = true;
                Some((Err(e), r))
            }
        }
    })
    .boxed())
}

/// The identity of a file, to tell a rotated-in file from the one being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// What became of the path being followed since the file was opened.
enum PathState {
    Same,
    Truncated,
    Replaced(tokio::fs::File, FileId),
}

struct LogReader {
    path: PathBuf,
    opts: LogOptions,
    running: ContainerRunning,
    file: BufReader<tokio::fs::File>,
    id: FileId,
    /// Offset in `file` of the end of what was read, to notice a truncation.
    pos: u64,
    /// The line being read; between reads at the end of the file, an incomplete last line.
    line: Vec<u8>,
    /// Records still to output when `tailLines` bounds a non-follow read.
    records_left: Option<u64>,
    /// Output bytes left under `limitBytes`.
    bytes_left: Option<u64>,
    /// Per stream (stdout, stderr): whether the next record starts a line, i.e. the previous
    /// one of that stream was full, which is where a timestamp prefix goes.
    line_start: [bool; 2],
    /// The file that replaced `path`, to switch to once the current one is drained.
    next_file: Option<(tokio::fs::File, FileId)>,
    /// Directory events while following; `None` before the first wait or if no watch could
    /// be set up.
    events: Option<mpsc::UnboundedReceiver<()>>,
    _watcher: Option<RecommendedWatcher>,
    watch_tried: bool,
    /// The container was seen not running: end at the next end of file.
    exited: bool,
    done: bool,
}

fn with_path(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

impl LogReader {
    async fn open(path: PathBuf, opts: LogOptions, running: ContainerRunning) -> io::Result<Self> {
        // Resolve symlinks once, as the reference does, so that the watch is on the
        // directory where rotation happens.
        let path = tokio::fs::canonicalize(&path)
            .await
            .map_err(|e| with_path(&path, "resolving log file", e))?;
        let tail = opts.tail_lines;
        let blocking_path = path.clone();
        let (file, id, start) = tokio::task::spawn_blocking(move || {
            let path = blocking_path;
            let file = std::fs::File::open(&path).map_err(|e| with_path(&path, "opening", e))?;
            let meta = file
                .metadata()
                .map_err(|e| with_path(&path, "reading metadata of", e))?;
            let start = match tail {
                Some(n) => tail_start(&file, meta.len(), n)
                    .map_err(|e| with_path(&path, "finding the tail of", e))?,
                None => 0,
            };
            Ok::<_, io::Error>((file, FileId::of(&meta), start))
        })
        .await
        .map_err(io::Error::other)??;
        let mut file = tokio::fs::File::from_std(file);
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| with_path(&path, "seeking in", e))?;
        debug!(path = %path.display(), start, ?opts, "reading container log");
        Ok(LogReader {
            records_left: opts.tail_lines.filter(|_| !opts.follow),
            bytes_left: opts.limit_bytes,
            path,
            opts,
            running,
            file: BufReader::with_capacity(READ_BUF, file),
            id,
            pos: start,
            line: Vec::new(),
            line_start: [true; 2],
            next_file: None,
            events: None,
            _watcher: None,
            watch_tried: false,
            exited: false,
            done: false,
        })
    }

    /// The next chunk of output, `None` at the end.
    async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        let mut out = BytesMut::new();
        loop {
            if self.records_left == Some(0) {
                self.done = true;
            }
            if self.done {
                return Ok((!out.is_empty()).then(|| out.freeze()));
            }
            let n = self
                .file
                .read_until(b'\n', &mut self.line)
                .await
                .map_err(|e| with_path(&self.path, "reading", e))?;
            self.pos += n as u64;
            if self.line.last() == Some(&b'\n') {
                self.emit_line(&mut out);
                if out.len() >= CHUNK {
                    return Ok(Some(out.freeze()));
                }
                continue;
            }
            // The end of the file, maybe with an incomplete last line in `self.line`. Hand out
            // what there is before waiting for more.
            if !out.is_empty() {
                return Ok(Some(out.freeze()));
            }
            if !self.opts.follow || !self.follow_at_eof(&mut out).await? {
                if !self.line.is_empty() {
                    debug!(path = %self.path.display(), "incomplete last line in log file");
                    self.emit_line(&mut out);
                }
                self.done = true;
            }
        }
    }

    /// At the end of the followed file: switch to a file rotated in at the path, wait for
    /// more, or tell (`false`) that the container stopped and its file is drained.
    async fn follow_at_eof(&mut self, out: &mut BytesMut) -> io::Result<bool> {
        if let Some((file, id)) = self.next_file.take() {
            if !self.line.is_empty() {
                debug!(path = %self.path.display(), "incomplete last line in rotated log file");
                self.emit_line(out);
            }
            debug!(path = %self.path.display(), "log file rotated, following the new one");
            self.file = BufReader::with_capacity(READ_BUF, file);
            self.id = id;
            self.pos = 0;
            return Ok(true);
        }
        match self.path_state().await? {
            PathState::Replaced(file, id) => {
                // Read what was written to the old file before the switch first.
                self.next_file = Some((file, id));
                return Ok(true);
            }
            PathState::Truncated => {
                debug!(path = %self.path.display(), "log file truncated, reading from its start");
                self.file
                    .seek(SeekFrom::Start(0))
                    .await
                    .map_err(|e| with_path(&self.path, "seeking in", e))?;
                self.pos = 0;
                self.line.clear();
                return Ok(true);
            }
            PathState::Same => {}
        }
        if self.exited {
            return Ok(false);
        }
        if !self.watch_tried {
            self.watch_tried = true;
            self.start_watch();
            // Something may have been written between the read and the watch: read again.
            return Ok(true);
        }
        if !self.running.check().await {
            debug!(path = %self.path.display(), "container not running, draining its log");
            self.exited = true;
            return Ok(true);
        }
        self.wait().await;
        Ok(true)
    }

    /// Whether the path still names the file being read.
    async fn path_state(&self) -> io::Result<PathState> {
        let meta = match tokio::fs::metadata(&self.path).await {
            Ok(m) => m,
            // Renamed away and not yet recreated: keep reading the old file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PathState::Same),
            Err(e) => return Err(with_path(&self.path, "reading metadata of", e)),
        };
        let id = FileId::of(&meta);
        if id == self.id {
            return Ok(if meta.len() < self.pos {
                PathState::Truncated
            } else {
                PathState::Same
            });
        }
        match tokio::fs::File::open(&self.path).await {
            // Open, then make sure it is the file just looked at (not yet another one).
            Ok(f) => {
                let meta = f
                    .metadata()
                    .await
                    .map_err(|e| with_path(&self.path, "reading metadata of", e))?;
                Ok(PathState::Replaced(f, FileId::of(&meta)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PathState::Same),
            Err(e) => Err(with_path(&self.path, "opening", e)),
        }
    }

    /// Watches the file's directory, where rotation renames and creates files. Without a
    /// watch the follower polls.
    fn start_watch(&mut self) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let handler = move |event: notify::Result<notify::Event>| {
            if let Err(e) = event {
                debug!(error = %e, "log file watch error");
            }
            // Any event (or error) is a reason to look at the file again.
            let _ = tx.send(());
        };
        match notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(dir, RecursiveMode::NonRecursive)?;
            Ok(w)
        }) {
            Ok(w) => {
                self._watcher = Some(w);
                self.events = Some(rx);
            }
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot watch log directory, polling");
            }
        }
    }

    /// Waits for a change in the directory, or a poll period.
    async fn wait(&mut self) {
        match &mut self.events {
            Some(rx) => match tokio::time::timeout(POLL_WATCHED, rx.recv()).await {
                Ok(Some(())) => while rx.try_recv().is_ok() {},
                Ok(None) => {
                    // The watcher is gone: poll from now on.
                    self.events = None;
                    self._watcher = None;
                }
                Err(_) => {}
            },
            None => tokio::time::sleep(POLL_UNWATCHED).await,
        }
    }

    /// Outputs the record in `self.line` as the options ask, and empties `self.line`.
    fn emit_line(&mut self, out: &mut BytesMut) {
        let line = std::mem::take(&mut self.line);
        self.emit_record(&line, out);
        // Keep the allocation for the next line.
        self.line = line;
        self.line.clear();
    }

    fn emit_record(&mut self, line: &[u8], out: &mut BytesMut) {
        let record = match parse_record(line) {
            Ok(r) => r,
            Err(e) => {
                debug!(
                    path = %self.path.display(),
                    error = %e,
                    line = %String::from_utf8_lossy(line),
                    "skipping malformed line in log file"
                );
                return;
            }
        };
        if let Some(n) = &mut self.records_left {
            *n = n.saturating_sub(1);
        }
        let slot = match record.stream {
            RecordStream::Stdout => 0,
            RecordStream::Stderr => 1,
        };
        let starts_line = self.line_start[slot];
        self.line_start[slot] = record.content.last().is_none_or(|b| *b == b'\n');
        if self
            .opts
            .since
            .is_some_and(|since| record.timestamp < since)
            || !self.opts.stream.includes(record.stream)
        {
            return;
        }
        if self.opts.timestamps && starts_line {
            let mut prefix = String::with_capacity(36);
            format_rfc3339_nano(record.timestamp, record.offset, &mut prefix);
            prefix.push(' ');
            self.push_limited(out, prefix.as_bytes());
        }
        self.push_limited(out, record.content);
    }

    /// Appends `data` to `out`, cut at `limitBytes`; ends the stream once the limit is hit.
    fn push_limited(&mut self, out: &mut BytesMut, data: &[u8]) {
        if self.done {
            return;
        }
        match &mut self.bytes_left {
            None => out.extend_from_slice(data),
            Some(left) => {
                let take = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                out.extend_from_slice(&data[..take]);
                *left -= take as u64;
                if *left == 0 {
                    self.done = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn append(path: &Path, text: &str) {
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        if let Err(e) = opened.and_then(|mut f| f.write_all(text.as_bytes())) {
            panic!("append {}: {e}", path.display());
        }
    }

    /// Without a directory watch (inotify instances exhausted, say), a follower polls and
    /// still sees new lines, rotation and the container's exit.
    #[tokio::test]
    async fn follows_by_polling_without_a_watch() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        let path = dir.path().join("0.log");
        append(&path, "2024-05-01T10:00:00Z stdout F one\n");
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let check = ContainerRunning::new(move || {
            let flag = flag.clone();
            async move { flag.load(Ordering::SeqCst) }
        });
        let opts = LogOptions {
            follow: true,
            ..LogOptions::default()
        };
        let mut reader = match LogReader::open(path.clone(), opts, check).await {
            Ok(r) => r,
            Err(e) => panic!("open: {e}"),
        };
        reader.watch_tried = true;

        let mut out = Vec::new();
        let rotated = dir.path().join("0.log.1");
        let read = async {
            let mut next = async || match reader.next_chunk().await {
                Ok(chunk) => chunk.unwrap_or_default(),
                Err(e) => panic!("read: {e}"),
            };
            out.extend_from_slice(&next().await);
            // Each change comes while the reader waits at the end of the file (the pause
            // only makes that likely; the outcome does not depend on it).
            let pause = || tokio::time::sleep(Duration::from_millis(300));
            let write = async {
                pause().await;
                append(&path, "2024-05-01T10:00:01Z stdout F two\n");
            };
            out.extend_from_slice(&tokio::join!(next(), write).0);
            let rotate = async {
                pause().await;
                if let Err(e) = std::fs::rename(&path, &rotated) {
                    panic!("rename: {e}");
                }
                append(&path, "2024-05-01T10:00:02Z stderr F three\n");
            };
            out.extend_from_slice(&tokio::join!(next(), rotate).0);
            running.store(false, Ordering::SeqCst);
            assert_eq!(next().await, Bytes::new());
        };
        if tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .is_err()
        {
            panic!("follow by polling stalled");
        }
        assert_eq!(out, b"one\ntwo\nthree\n");
        assert!(reader.events.is_none());
    }
}
