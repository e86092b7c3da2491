//! One record of the CRI log format:
//! `<RFC3339Nano timestamp> <stdout|stderr> <P|F>[:<more tags>] <content>\n`.

use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::Offset;

use super::options::RecordStream;

/// A parsed record; `content` borrows the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    /// When the runtime wrote the record.
    pub timestamp: Timestamp,
    /// The UTC offset the timestamp was written with, kept so that `timestamps=true` prints
    /// it back as the runtime wrote it.
    pub offset: Offset,
    pub stream: RecordStream,
    /// The content, with its `\n` for a full record and without it for a partial one.
    pub content: &'a [u8],
}

/// Why a line is not a CRI record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("timestamp is not found")]
    NoTimestamp,
    #[error("unexpected timestamp format: {0}")]
    BadTimestamp(String),
    #[error("stream type is not found")]
    NoStream,
    #[error("unexpected stream type {0:?}")]
    BadStream(String),
    #[error("log tag is not found")]
    NoTag,
}

/// Parses one line (with or without its trailing `\n`).
pub(crate) fn parse_record(line: &[u8]) -> Result<Record<'_>, ParseError> {
    let (ts, rest) = split_field(line).ok_or(ParseError::NoTimestamp)?;
    let ts_text =
        std::str::from_utf8(ts).map_err(|_| ParseError::BadTimestamp("not UTF-8".into()))?;
    let timestamp = ts_text
        .parse::<Timestamp>()
        .map_err(|e| ParseError::BadTimestamp(e.to_string()))?;
    let offset = offset_of(ts_text);

    let (stream, rest) = split_field(rest).ok_or(ParseError::NoStream)?;
    let stream = match stream {
        b"stdout" => RecordStream::Stdout,
        b"stderr" => RecordStream::Stderr,
        other => return Err(ParseError::BadStream(lossy(other))),
    };

    let (tags, mut content) = split_field(rest).ok_or(ParseError::NoTag)?;
    // Only the first tag means something today; more may follow after `:`.
    let partial = tags.split(|b| *b == b':').next() == Some(b"P");
    if partial && content.last() == Some(&b'\n') {
        content = &content[..content.len() - 1];
    }
    Ok(Record {
        timestamp,
        offset,
        stream,
        content,
    })
}

fn split_field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = line.iter().position(|b| *b == b' ')?;
    Some((&line[..i], &line[i + 1..]))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The offset of an RFC3339 time already known to parse: `Z` or a trailing `±hh:mm`.
fn offset_of(ts: &str) -> Offset {
    let parsed = ts
        .len()
        .checked_sub(6)
        .and_then(|i| ts.get(i..))
        .and_then(|tail| {
            let sign = match tail.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hours: i32 = tail.get(1..3)?.parse().ok()?;
            let minutes: i32 = tail.get(4..6)?.parse().ok()?;
            Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()
        });
    parsed.unwrap_or(Offset::UTC)
}

/// Appends `ts` in Go's RFC3339Nano layout (fraction without trailing zeros, `Z` for UTC)
/// at `offset`, as the reference prints timestamps.
pub(crate) fn format_rfc3339_nano(ts: Timestamp, offset: Offset, out: &mut String) {
    let dt = offset.to_datetime(ts);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    let nanos = dt.subsec_nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        let _ = write!(out, ".{}", frac.trim_end_matches('0'));
    }
    let secs = offset.seconds();
    if secs == 0 {
        out.push('Z');
    } else {
        let sign = if secs < 0 { '-' } else { '+' };
        let abs = secs.unsigned_abs();
        let _ = write!(out, "{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records() {
        let r = parse_record(b"2016-10-06T00:17:09.669794202Z stdout F log content 1\n");
        let r = match r {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(r.stream, RecordStream::Stdout);
        assert_eq!(r.content, b"log content 1\n");

        let r = parse_record(b"2016-10-06T00:17:09.669794202Z stderr P:x part\n");
        assert_eq!(
            r.map(|r| (r.stream, r.content)),
            Ok((RecordStream::Stderr, &b"part"[..]))
        );

        let r = parse_record(b"2016-10-06T00:17:09Z stdout F \n");
        assert_eq!(r.map(|r| r.content), Ok(&b"\n"[..]));
    }

    #[test]
    fn refuses_malformed() {
        let cases: [(&[u8], ParseError); 5] = [
            (b"nospace\n", ParseError::NoTimestamp),
            (
                b"notatime stdout F x\n",
                ParseError::BadTimestamp(String::new()),
            ),
            (b"2016-10-06T00:17:09Z stdout\n", ParseError::NoStream),
            (
                b"2016-10-06T00:17:09Z stdin F x\n",
                ParseError::BadStream("stdin".into()),
            ),
            (b"2016-10-06T00:17:09Z stdout F\n", ParseError::NoTag),
        ];
        for (line, want) in cases {
            let got = parse_record(line);
            match (&got, &want) {
                (Err(ParseError::BadTimestamp(_)), ParseError::BadTimestamp(_)) => {}
                _ => assert_eq!(got, Err(want), "{}", String::from_utf8_lossy(line)),
            }
        }
    }

    #[test]
    fn formats_like_go() {
        let cases = [
            (
                "2016-10-06T00:17:09.669794202Z",
                "2016-10-06T00:17:09.669794202Z",
            ),
            ("2016-10-06T00:17:09.500000000Z", "2016-10-06T00:17:09.5Z"),
            ("2016-10-06T00:17:09Z", "2016-10-06T00:17:09Z"),
            (
                "2016-10-06T02:17:09.25+02:00",
                "2016-10-06T02:17:09.25+02:00",
            ),
            ("2016-10-05T20:47:09-03:30", "2016-10-05T20:47:09-03:30"),
        ];
        for (input, want) in cases {
            let ts: Timestamp = match input.parse() {
                Ok(t) => t,
                Err(e) => panic!("{input}: {e}"),
            };
            let mut out = String::new();
            format_rfc3339_nano(ts, offset_of(input), &mut out);
            assert_eq!(out, want);
        }
    }
}
