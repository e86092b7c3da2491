//! Finding where the last N lines of a file begin, reading it backwards in blocks.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// How much of the file one backwards step reads.
const BLOCK: u64 = 8 * 1024;

/// The offset where the last `n` `\n`-terminated lines of `file` (of `size` bytes) begin.
/// A last line without its `\n` is not counted, so it comes on top of the `n`, as in the
/// reference. Memory use is one block, whatever the file's size.
pub(crate) fn tail_start(file: &File, size: u64, n: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; BLOCK as usize];
    let mut seen = 0u64;
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let len = (end - start) as usize;
        let block = &mut buf[..len];
        file.read_exact_at(block, start)?;
        for (i, b) in block.iter().enumerate().rev() {
            if *b == b'\n' {
                seen += 1;
                // The (n+1)th newline from the end closes the line before the tail.
                if seen > n {
                    return Ok(start + i as u64 + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn start_of(content: &[u8], n: u64) -> u64 {
        let mut f = match tempfile::tempfile() {
            Ok(f) => f,
            Err(e) => panic!("tempfile: {e}"),
        };
        if let Err(e) = f.write_all(content) {
            panic!("write: {e}");
        }
        match tail_start(&f, content.len() as u64, n) {
            Ok(s) => s,
            Err(e) => panic!("tail: {e}"),
        }
    }

    #[test]
    fn finds_tail_start() {
        let cases: [(&[u8], u64, u64); 8] = [
            (b"", 3, 0),
            (b"a\nb\nc\n", 0, 6),
            (b"a\nb\nc\n", 1, 4),
            (b"a\nb\nc\n", 3, 0),
            (b"a\nb\nc\n", 10, 0),
            (b"a\nb\nc", 1, 2),
            (b"a\nb\nc", 0, 4),
            (b"\n\n", 1, 1),
        ];
        for (content, n, want) in cases {
            assert_eq!(
                start_of(content, n),
                want,
                "{:?} n={n}",
                String::from_utf8_lossy(content)
            );
        }
    }

    #[test]
    fn crosses_blocks() {
        // Lines of 1000 bytes, so that the tail spans several blocks.
        let line = [vec![b'x'; 999], vec![b'\n']].concat();
        let content: Vec<u8> = line.iter().copied().cycle().take(1000 * 100).collect();
        for n in [0u64, 1, 9, 17, 50, 99, 100, 200] {
            let want = 1000 * (100u64.saturating_sub(n));
            assert_eq!(start_of(&content, n), want, "n={n}");
        }
    }
}
