//! The line a CSV record starts on, counted on a second reader of the same
//! file.
//!
//! csv's `Position::line` of a record is the count of `\n` bytes consumed
//! when its read began. A record ending in `\r\n` stops at the `\r`: its
//! `\n`, and the blank lines before the next record, are consumed by the
//! next read after that one's position was taken. So in a CRLF file (RFC
//! 4180, every spreadsheet export) each record came out one line too low,
//! and a blank line before a record hid from it in any file. The position's
//! byte offset is exact, though: counting line breaks up to it, and past the
//! empty lines csv skips, gives the line of the record's first byte.

use std::io::{self, BufRead};

/// Follows a file alongside its csv reader, counting line breaks as csv
/// reads them: `\n`, `\r\n`, or a lone `\r`.
#[derive(Debug)]
pub struct LineCounter<R> {
    input: R,
    /// The offset of the next byte not yet counted.
    byte: u64,
    /// The line that byte is on (the first line is 1).
    line: u64,
    /// Whether the last byte counted was `\r` (then a `\n` ends no line).
    after_cr: bool,
}

impl<R: BufRead> LineCounter<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            byte: 0,
            line: 1,
            after_cr: false,
        }
    }

    /// The line of the record whose read began at byte `start` (csv's
    /// `Position::byte`): the line of its first byte after the line breaks
    /// csv skips there. Records must come in file order.
    pub fn line_of(&mut self, start: u64) -> io::Result<u64> {
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(self.line);
            }
            let mut used = 0;
            let mut found = false;
            for &b in buf {
                if self.byte >= start && b != b'\r' && b != b'\n' {
                    found = true;
                    break;
                }
                if b == b'\r' || (b == b'\n' && !self.after_cr) {
                    self.line += 1;
                }
                self.after_cr = b == b'\r';
                self.byte += 1;
                used += 1;
            }
            self.input.consume(used);
            if found {
                return Ok(self.line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line csv's reader gives each record, and the one counted here.
    fn lines_of(text: &str) -> Vec<(u64, u64)> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut counter = LineCounter::new(text.as_bytes());
        let mut lines = Vec::new();
        for record in reader.records() {
            let position = record
                .expect("a record")
                .position()
                .cloned()
                .expect("a position");
            let counted = counter.line_of(position.byte()).expect("in memory");
            lines.push((position.line(), counted));
        }
        lines
    }

    #[test]
    fn every_line_ending_counts_once() {
        let counted =
            |text: &str| -> Vec<u64> { lines_of(text).into_iter().map(|l| l.1).collect() };
        assert_eq!(counted("a\nb\nc\n"), [1, 2, 3]);
        assert_eq!(counted("a\r\nb\r\nc\r\n"), [1, 2, 3]);
        assert_eq!(counted("a\rb\rc"), [1, 2, 3]);
        assert_eq!(counted("a\r\n\r\nb\n\nc"), [1, 3, 5]);
        // A quoted line break belongs to its record, which starts on line 2.
        assert_eq!(counted("a\r\n\"b\r\nb\",x\r\nc\r\n"), [1, 2, 4]);
        assert_eq!(counted("a\n\"b\nb\nb\"\nc"), [1, 2, 5]);
    }

    #[test]
    fn csv_alone_counts_crlf_records_one_line_low() {
        // Why this module exists: the reader's own line of the second record.
        assert_eq!(lines_of("a\r\nb\r\n"), [(1, 1), (1, 2)]);
        assert_eq!(lines_of("a\nb\n"), [(1, 1), (2, 2)]);
    }
}
