//! A SPDY/3.1 client for tests: what kubectl (against API servers before 1.30) and the API
//! server (toward kubelets) speak on `/exec`, `/attach` and `/portForward` after an HTTP/1.1
//! upgrade (`Upgrade: SPDY/3.1`).
//!
//! Framing as the SPDY/3 specification (draft 3, with 3.1's session-level WINDOW_UPDATE):
//! an 8-byte frame header, control frames (bit 0 set: version 3, a type, flags, a 24-bit
//! length) and data frames (bit 0 clear: a 31-bit stream ID, flags, a 24-bit length). Header
//! blocks are zlib streams, one compression context per direction for the whole connection,
//! primed with the specification's dictionary and sync-flushed after each block.
//!
//! Flow control is not enforced and no WINDOW_UPDATE is sent unasked: the tests move a few
//! kilobytes per stream, well inside the initial 64 KiB windows.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http::HeaderMap;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// The last frame of a stream in this direction (half-close).
pub const FLAG_FIN: u8 = 0x01;
/// A stream on which the receiver may not send (SYN_STREAM).
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status: the receiver refuses the stream before any processing.
pub const REFUSED_STREAM: u32 = 3;
/// GOAWAY status: a normal end of the session.
pub const GOAWAY_OK: u32 = 0;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// Frames are at most 2^24 - 1 bytes of payload (a 24-bit length).
const MAX_PAYLOAD: usize = 0xff_ffff;
const STREAM_ID_MASK: u32 = 0x7fff_ffff;

/// The name/value pairs of a header block, names in lower case as SPDY requires; several
/// values of one name travel NUL-separated in one value.
pub type Headers = Vec<(String, String)>;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// The new stream (odd when the client opens it).
        stream_id: u32,
        /// The stream it is pushed for (0: none).
        associated_to: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// [`FLAG_FIN`], [`FLAG_UNIDIRECTIONAL`].
        flags: u8,
        /// The stream's headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream.
        stream_id: u32,
        /// [`FLAG_FIN`].
        flags: u8,
        /// The reply's headers.
        headers: Headers,
    },
    /// Ends a stream abnormally.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// Why (PROTOCOL_ERROR = 1, ..., [`REFUSED_STREAM`], CANCEL = 5...).
        status: u32,
    },
    /// Session settings: (flags, ID, value) triples.
    Settings {
        /// FLAG_SETTINGS_CLEAR_SETTINGS = 1.
        flags: u8,
        /// The entries.
        entries: Vec<(u8, u32, u32)>,
    },
    /// A round-trip probe: the peer echoes it when it did not start it.
    Ping {
        /// Odd from the client, even from the server.
        id: u32,
    },
    /// The sender will open no more streams and ignores those above `last_good_stream_id`.
    GoAway {
        /// The last stream the sender acted on.
        last_good_stream_id: u32,
        /// [`GOAWAY_OK`], PROTOCOL_ERROR = 1, INTERNAL_ERROR = 2.
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// [`FLAG_FIN`].
        flags: u8,
        /// The headers.
        headers: Headers,
    },
    /// More room in a flow-control window (stream 0: the session's, as of SPDY/3.1).
    WindowUpdate {
        /// The stream, or 0.
        stream_id: u32,
        /// How many more bytes the sender may send.
        delta: u32,
    },
    /// Stream data.
    Data {
        /// The stream.
        stream_id: u32,
        /// [`FLAG_FIN`].
        flags: u8,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A control frame of a type this client does not know (ignored, as the spec asks).
    Unknown {
        /// Its type.
        kind: u16,
    },
}

/// The SPDY/3 header compression dictionary (specification section 2.6.10.1): 4-byte
/// big-endian length-prefixed header names and common values, then a run of common status
/// lines, dates and content types.
pub fn dictionary() -> Vec<u8> {
    const WORDS: [&str; 65] = [
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: [&str; 3] = [
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417\
         502504505203 Non-Authoritative Information204 No Content301 Moved Permanently\
         400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error\
         501 Not Implemented503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 \
         Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,\
         application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=\
         gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    ];
    let mut dict = Vec::with_capacity(1423);
    for word in WORDS {
        dict.extend_from_slice(&(word.len() as u32).to_be_bytes());
        dict.extend_from_slice(word.as_bytes());
    }
    for part in TAIL {
        dict.extend_from_slice(part.as_bytes());
    }
    dict
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// The sending side's header compression context.
pub struct HeaderEncoder {
    zlib: Compress,
}

impl HeaderEncoder {
    /// A fresh context primed with the dictionary.
    pub fn new() -> io::Result<Self> {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(&dictionary())
            .map_err(io::Error::other)?;
        Ok(Self { zlib })
    }

    /// One header block: the pairs, compressed and sync-flushed so that the peer can
    /// decode it on its own.
    pub fn encode(&mut self, headers: &Headers) -> io::Result<Vec<u8>> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            for s in [name.to_ascii_lowercase().as_str(), value.as_str()] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let start = self.zlib.total_in();
        loop {
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            let consumed = (self.zlib.total_in() - start) as usize;
            self.zlib
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .map_err(io::Error::other)?;
            // Done when all input went in and the flush did not fill the output.
            if (self.zlib.total_in() - start) as usize == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving side's header decompression context.
pub struct HeaderDecoder {
    zlib: Decompress,
    dictionary: Vec<u8>,
}

impl HeaderDecoder {
    /// A fresh context; the dictionary goes in when the stream asks for it.
    pub fn new() -> Self {
        Self {
            zlib: Decompress::new(true),
            dictionary: dictionary(),
        }
    }

    /// One header block.
    pub fn decode(&mut self, block: &[u8]) -> io::Result<Headers> {
        let mut raw = Vec::with_capacity(block.len() * 4 + 256);
        let start = self.zlib.total_in();
        loop {
            if raw.len() == raw.capacity() {
                raw.reserve(1024);
            }
            let consumed = (self.zlib.total_in() - start) as usize;
            let before = (self.zlib.total_in(), self.zlib.total_out());
            match self
                .zlib
                .decompress_vec(&block[consumed..], &mut raw, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    // The peer's first block names the dictionary by its Adler-32; a wrong
                    // dictionary fails here.
                    self.zlib
                        .set_dictionary(&self.dictionary)
                        .map_err(|e| invalid(format!("SPDY header dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(invalid(format!("SPDY header block: {e}"))),
            }
            let all_in = (self.zlib.total_in() - start) as usize == block.len();
            if all_in && raw.len() < raw.capacity() {
                break;
            }
            if before == (self.zlib.total_in(), self.zlib.total_out()) && raw.len() < raw.capacity()
            {
                return Err(invalid("SPDY header block: truncated"));
            }
        }
        parse_header_block(&raw)
    }
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

fn parse_header_block(raw: &[u8]) -> io::Result<Headers> {
    let mut at = 0usize;
    let take_u32 = |at: &mut usize| -> io::Result<u32> {
        let bytes = raw
            .get(*at..*at + 4)
            .ok_or_else(|| invalid("SPDY header block: short"))?;
        *at += 4;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    };
    let count = take_u32(&mut at)?;
    let mut headers = Vec::new();
    for _ in 0..count {
        let mut pair = Vec::with_capacity(2);
        for _ in 0..2 {
            let len = take_u32(&mut at)? as usize;
            let s = raw
                .get(at..at + len)
                .ok_or_else(|| invalid("SPDY header block: short string"))?;
            at += len;
            pair.push(String::from_utf8_lossy(s).into_owned());
        }
        let value = pair.pop().unwrap_or_default();
        let name = pair.pop().unwrap_or_default();
        headers.push((name, value));
    }
    Ok(headers)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Frame {
    /// The frame's bytes; header blocks go through `encoder` (in the order frames are sent).
    pub fn encode(&self, encoder: &mut HeaderEncoder) -> io::Result<Vec<u8>> {
        let control = |kind: u16, flags: u8, payload: Vec<u8>| -> io::Result<Vec<u8>> {
            if payload.len() > MAX_PAYLOAD {
                return Err(invalid("SPDY frame too large"));
            }
            let mut out = Vec::with_capacity(8 + payload.len());
            out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            out.push(flags);
            out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
            out.extend_from_slice(&payload);
            Ok(out)
        };
        let id = |stream_id: u32| (stream_id & STREAM_ID_MASK).to_be_bytes();
        match self {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let mut p = Vec::new();
                p.extend_from_slice(&id(*stream_id));
                p.extend_from_slice(&id(*associated_to));
                p.push((priority & 0x7) << 5);
                p.push(0); // slot: no CREDENTIAL
                p.extend_from_slice(&encoder.encode(headers)?);
                control(SYN_STREAM, *flags, p)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let mut p = id(*stream_id).to_vec();
                p.extend_from_slice(&encoder.encode(headers)?);
                control(SYN_REPLY, *flags, p)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let mut p = id(*stream_id).to_vec();
                p.extend_from_slice(&encoder.encode(headers)?);
                control(HEADERS, *flags, p)
            }
            Frame::RstStream { stream_id, status } => {
                let mut p = id(*stream_id).to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(RST_STREAM, 0, p)
            }
            Frame::Settings { flags, entries } => {
                let mut p = (entries.len() as u32).to_be_bytes().to_vec();
                for (entry_flags, entry_id, value) in entries {
                    p.push(*entry_flags);
                    p.extend_from_slice(&entry_id.to_be_bytes()[1..]);
                    p.extend_from_slice(&value.to_be_bytes());
                }
                control(SETTINGS, *flags, p)
            }
            Frame::Ping { id } => control(PING, 0, id.to_be_bytes().to_vec()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                let mut p = id(*last_good_stream_id).to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(GOAWAY, 0, p)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut p = id(*stream_id).to_vec();
                p.extend_from_slice(&(delta & STREAM_ID_MASK).to_be_bytes());
                control(WINDOW_UPDATE, 0, p)
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(invalid("SPDY data frame too large"));
                }
                let mut out = Vec::with_capacity(8 + data.len());
                out.extend_from_slice(&id(*stream_id));
                out.push(*flags);
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
                Ok(out)
            }
            Frame::Unknown { kind } => control(*kind, 0, Vec::new()),
        }
    }

    /// The first frame in `buf` and its length, `None` when `buf` holds less than a frame;
    /// header blocks go through `decoder` (in the order frames arrive).
    pub fn decode(buf: &[u8], decoder: &mut HeaderDecoder) -> io::Result<Option<(Frame, usize)>> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = (be32(&buf[4..8]) & 0x00ff_ffff) as usize;
        let total = 8 + len;
        if buf.len() < total {
            return Ok(None);
        }
        let flags = buf[4];
        let p = &buf[8..total];
        if buf[0] & 0x80 == 0 {
            let frame = Frame::Data {
                stream_id: be32(&buf[0..4]) & STREAM_ID_MASK,
                flags,
                data: p.to_vec(),
            };
            return Ok(Some((frame, total)));
        }
        let version = u16::from_be_bytes([buf[0], buf[1]]) & 0x7fff;
        if version != VERSION {
            return Err(invalid(format!("SPDY version {version}, want {VERSION}")));
        }
        let kind = u16::from_be_bytes([buf[2], buf[3]]);
        let need = |n: usize| {
            if p.len() < n {
                Err(invalid(format!(
                    "SPDY control frame {kind}: {} bytes",
                    p.len()
                )))
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            SYN_STREAM => {
                need(10)?;
                Frame::SynStream {
                    stream_id: be32(p) & STREAM_ID_MASK,
                    associated_to: be32(&p[4..]) & STREAM_ID_MASK,
                    priority: p[8] >> 5,
                    flags,
                    headers: decoder.decode(&p[10..])?,
                }
            }
            SYN_REPLY | HEADERS => {
                need(4)?;
                let stream_id = be32(p) & STREAM_ID_MASK;
                let headers = decoder.decode(&p[4..])?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                need(8)?;
                Frame::RstStream {
                    stream_id: be32(p) & STREAM_ID_MASK,
                    status: be32(&p[4..]),
                }
            }
            SETTINGS => {
                need(4)?;
                let count = be32(p) as usize;
                need(4 + count * 8)?;
                let entries = (0..count)
                    .map(|i| {
                        let e = &p[4 + i * 8..];
                        (e[0], be32(e) & 0x00ff_ffff, be32(&e[4..]))
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                need(4)?;
                Frame::Ping { id: be32(p) }
            }
            GOAWAY => {
                need(4)?;
                Frame::GoAway {
                    last_good_stream_id: be32(p) & STREAM_ID_MASK,
                    // SPDY/2 peers send no status.
                    status: if p.len() >= 8 { be32(&p[4..]) } else { 0 },
                }
            }
            WINDOW_UPDATE => {
                need(8)?;
                Frame::WindowUpdate {
                    stream_id: be32(p) & STREAM_ID_MASK,
                    delta: be32(&p[4..]) & STREAM_ID_MASK,
                }
            }
            kind => Frame::Unknown { kind },
        };
        Ok(Some((frame, total)))
    }
}

/// What a stream's reader gets.
#[derive(Debug)]
enum Event {
    Data(Vec<u8>),
    /// The peer reset the stream with this status.
    Reset(u32),
}

struct Slot {
    events: mpsc::UnboundedSender<Event>,
    reply: Option<oneshot::Sender<Result<Headers, u32>>>,
}

struct Writer {
    io: WriteHalf<Box<dyn Io>>,
    encoder: HeaderEncoder,
}

/// What the connection's halves share.
struct Shared {
    writer: tokio::sync::Mutex<Writer>,
    streams: Mutex<HashMap<u32, Slot>>,
    pings: Mutex<HashMap<u32, oneshot::Sender<()>>>,
    next_stream: AtomicU32,
    next_ping: AtomicU32,
    /// Every frame the server sent, in order, for assertions on the session's shape.
    received: Mutex<Vec<Frame>>,
    /// Becomes true when the server's side of the connection ended.
    ended: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    async fn send(&self, frame: &Frame) -> io::Result<()> {
        let mut w = self.writer.lock().await;
        let bytes = frame.encode(&mut w.encoder)?;
        w.io.write_all(&bytes).await?;
        w.io.flush().await
    }
}

/// What the connection runs over: the upgraded HTTP connection.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A SPDY/3.1 session, client side, over an upgraded connection.
pub struct Connection {
    shared: Arc<Shared>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    /// Starts the session on `io` (its frame reader runs as a task).
    pub fn new(io: impl Io) -> io::Result<Self> {
        let boxed: Box<dyn Io> = Box::new(io);
        let (read, write) = tokio::io::split(boxed);
        let shared = Arc::new(Shared {
            writer: tokio::sync::Mutex::new(Writer {
                io: write,
                encoder: HeaderEncoder::new()?,
            }),
            streams: Mutex::new(HashMap::new()),
            pings: Mutex::new(HashMap::new()),
            next_stream: AtomicU32::new(1),
            next_ping: AtomicU32::new(1),
            received: Mutex::new(Vec::new()),
            ended: tokio::sync::watch::Sender::new(false),
        });
        let reader = tokio::spawn(read_frames(read, shared.clone()));
        Ok(Self { shared, reader })
    }

    /// Opens a stream with `headers` (SYN_STREAM) and waits for the server's SYN_REPLY, as
    /// Kubernetes clients do; a refusal (RST_STREAM, or a SYN_REPLY with FIN) is an error.
    pub async fn open(&self, headers: &[(&str, &str)]) -> io::Result<Stream> {
        let stream_id = self.shared.next_stream.fetch_add(2, Ordering::SeqCst);
        let (events_tx, events) = mpsc::unbounded_channel();
        let (reply_tx, reply) = oneshot::channel();
        lock(&self.shared.streams).insert(
            stream_id,
            Slot {
                events: events_tx,
                reply: Some(reply_tx),
            },
        );
        let frame = Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            flags: 0,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        self.shared.send(&frame).await?;
        let reply_headers = match reply.await {
            Ok(Ok(h)) => h,
            Ok(Err(status)) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("stream {stream_id} refused (status {status})"),
                ));
            }
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the session ended before stream {stream_id} was answered"),
                ));
            }
        };
        Ok(Stream {
            id: stream_id,
            shared: self.shared.clone(),
            events,
            reply_headers,
            reset: None,
            ended: false,
        })
    }

    /// A PING round trip.
    pub async fn ping(&self) -> io::Result<Duration> {
        let id = self.shared.next_ping.fetch_add(2, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pings).insert(id, tx);
        let started = Instant::now();
        self.shared.send(&Frame::Ping { id }).await?;
        rx.await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the session ended before PONG",
            )
        })?;
        Ok(started.elapsed())
    }

    /// Ends the session: GOAWAY, then the write side closes.
    pub async fn close(&self) -> io::Result<()> {
        let last = self
            .shared
            .next_stream
            .load(Ordering::SeqCst)
            .saturating_sub(2);
        self.shared
            .send(&Frame::GoAway {
                last_good_stream_id: last,
                status: GOAWAY_OK,
            })
            .await?;
        self.shared.writer.lock().await.io.shutdown().await
    }

    /// Waits until the server ends the connection, failing after `deadline`.
    pub async fn closed(&self, deadline: Duration) -> io::Result<()> {
        let mut ended = self.shared.ended.subscribe();
        match tokio::time::timeout(deadline, ended.wait_for(|e| *e)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the session still open after {deadline:?}"),
            )),
        }
    }

    /// The frames the server sent so far.
    pub fn received(&self) -> Vec<Frame> {
        lock(&self.shared.received).clone()
    }

    /// Sends a raw frame (for frames the stream API does not cover, e.g. WINDOW_UPDATE).
    pub async fn send(&self, frame: &Frame) -> io::Result<()> {
        self.shared.send(frame).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn read_frames(mut read: ReadHalf<Box<dyn Io>>, shared: Arc<Shared>) {
    let mut decoder = HeaderDecoder::new();
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    'session: loop {
        loop {
            let (frame, used) = match Frame::decode(&buf, &mut decoder) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    eprintln!("SPDY client: {e}");
                    break 'session;
                }
            };
            buf.drain(..used);
            lock(&shared.received).push(frame.clone());
            handle(frame, &shared).await;
        }
        match read.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => {
                eprintln!("SPDY client: reading: {e}");
                break;
            }
        }
    }
    // The session is over: every stream's reader sees its end, pending opens fail.
    lock(&shared.streams).clear();
    lock(&shared.pings).clear();
    shared.ended.send_replace(true);
}

async fn handle(frame: Frame, shared: &Shared) {
    match frame {
        Frame::SynReply {
            stream_id,
            flags,
            headers,
        } => {
            let mut streams = lock(&shared.streams);
            if let Some(slot) = streams.get_mut(&stream_id) {
                if let Some(reply) = slot.reply.take() {
                    let _ = reply.send(if flags & FLAG_FIN != 0 {
                        Err(0)
                    } else {
                        Ok(headers)
                    });
                }
                if flags & FLAG_FIN != 0 {
                    streams.remove(&stream_id);
                }
            }
        }
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            let mut streams = lock(&shared.streams);
            if let Some(slot) = streams.get(&stream_id) {
                if !data.is_empty() {
                    let _ = slot.events.send(Event::Data(data));
                }
                if flags & FLAG_FIN != 0 {
                    // Dropping the sender is the end of the stream for its reader.
                    streams.remove(&stream_id);
                }
            }
        }
        Frame::RstStream { stream_id, status } => {
            if let Some(mut slot) = lock(&shared.streams).remove(&stream_id) {
                if let Some(reply) = slot.reply.take() {
                    let _ = reply.send(Err(status));
                }
                let _ = slot.events.send(Event::Reset(status));
            }
        }
        Frame::Ping { id } => {
            if id % 2 == 0 {
                // The server's: echo it.
                let _ = shared.send(&Frame::Ping { id }).await;
            } else if let Some(done) = lock(&shared.pings).remove(&id) {
                let _ = done.send(());
            }
        }
        Frame::SynStream { stream_id, .. } => {
            // Servers push nothing in the Kubernetes protocols.
            let _ = shared
                .send(&Frame::RstStream {
                    stream_id,
                    status: REFUSED_STREAM,
                })
                .await;
        }
        Frame::Settings { .. }
        | Frame::GoAway { .. }
        | Frame::Headers { .. }
        | Frame::WindowUpdate { .. }
        | Frame::Unknown { .. } => {}
    }
}

/// One stream of a [`Connection`].
pub struct Stream {
    id: u32,
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<Event>,
    reply_headers: Headers,
    reset: Option<u32>,
    ended: bool,
}

impl Stream {
    /// The stream ID.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The headers of the server's SYN_REPLY.
    pub fn reply_headers(&self) -> &Headers {
        &self.reply_headers
    }

    /// Sends `data` on the stream.
    pub async fn write(&self, data: &[u8]) -> io::Result<()> {
        for part in data.chunks(MAX_PAYLOAD) {
            self.shared
                .send(&Frame::Data {
                    stream_id: self.id,
                    flags: 0,
                    data: part.to_vec(),
                })
                .await?;
        }
        Ok(())
    }

    /// Half-closes the stream: an empty DATA frame with FIN (the peer sees end of input).
    pub async fn close(&self) -> io::Result<()> {
        self.shared
            .send(&Frame::Data {
                stream_id: self.id,
                flags: FLAG_FIN,
                data: Vec::new(),
            })
            .await
    }

    /// The next bytes from the server; `None` once it half-closed or reset the stream (or
    /// the session ended).
    pub async fn read(&mut self) -> Option<Vec<u8>> {
        if self.ended {
            return None;
        }
        match self.events.recv().await {
            Some(Event::Data(d)) => Some(d),
            Some(Event::Reset(status)) => {
                self.reset = Some(status);
                self.ended = true;
                None
            }
            None => {
                self.ended = true;
                None
            }
        }
    }

    /// Everything until the server half-closes the stream, failing after `deadline`.
    pub async fn read_to_end(&mut self, deadline: Duration) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let until = tokio::time::Instant::now() + deadline;
        loop {
            match tokio::time::timeout_at(until, self.read()).await {
                Ok(Some(d)) => out.extend_from_slice(&d),
                Ok(None) => return Ok(out),
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "stream {}: no end within {deadline:?}; got {:?}",
                            self.id,
                            String::from_utf8_lossy(&out)
                        ),
                    ));
                }
            }
        }
    }

    /// Reads until what came contains `needle`, failing after `deadline` or at the end.
    pub async fn read_until(&mut self, needle: &str, deadline: Duration) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let until = tokio::time::Instant::now() + deadline;
        while !String::from_utf8_lossy(&out).contains(needle) {
            match tokio::time::timeout_at(until, self.read()).await {
                Ok(Some(d)) => out.extend_from_slice(&d),
                Ok(None) | Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "stream {}: {needle:?} not seen within {deadline:?} (ended: {}); got {:?}",
                            self.id,
                            self.ended,
                            String::from_utf8_lossy(&out)
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The status of the server's RST_STREAM, if it reset the stream.
    pub fn reset_status(&self) -> Option<u32> {
        self.reset
    }
}

/// The server's answer to the upgrade request.
#[derive(Debug)]
pub struct Upgraded {
    /// The session.
    pub connection: Connection,
    /// The headers of the `101 Switching Protocols` (e.g. the negotiated
    /// `X-Stream-Protocol-Version`).
    pub headers: HeaderMap,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

/// A refused upgrade: the server's status and body.
#[derive(Debug)]
pub struct Refused {
    /// The HTTP status.
    pub status: http::StatusCode,
    /// The body, as text.
    pub body: String,
}

/// Sends `POST path_and_query` on `io` (an HTTP/1.1 connection, e.g. TLS to the kubelet)
/// asking to upgrade to SPDY/3.1 with the `X-Stream-Protocol-Version`s `protocols`, as
/// Kubernetes' SPDY round tripper does, and starts the session on the upgraded connection.
pub async fn upgrade(
    io: impl Io,
    authority: &str,
    path_and_query: &str,
    protocols: &[&str],
) -> Result<Upgraded, Refused> {
    let refused = |status: http::StatusCode, body: String| Refused { status, body };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| refused(http::StatusCode::BAD_GATEWAY, e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut request = http::Request::builder()
        .method(http::Method::POST)
        .uri(path_and_query)
        .header(http::header::HOST, authority)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "SPDY/3.1");
    for p in protocols {
        request = request.header("X-Stream-Protocol-Version", *p);
    }
    let request = request
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| refused(http::StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut response = sender
        .send_request(request)
        .await
        .map_err(|e| refused(http::StatusCode::BAD_GATEWAY, e.to_string()))?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        use http_body_util::BodyExt;
        let status = response.status();
        let body = match response.into_body().collect().await {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Err(e) => format!("(body unreadable: {e})"),
        };
        return Err(refused(status, body));
    }
    let headers = response.headers().clone();
    let upgraded = hyper::upgrade::on(&mut response)
        .await
        .map_err(|e| refused(http::StatusCode::BAD_GATEWAY, e.to_string()))?;
    let connection = Connection::new(TokioIo::new(upgraded))
        .map_err(|e| refused(http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Upgraded {
        connection,
        headers,
    })
}
