//! Rows in PostgreSQL's binary `COPY` format, for `COPY … FROM STDIN (FORMAT
//! binary)`: the fastest way to add many rows. PostgreSQL writes them
//! straight to the table, several to a page at a time, where an
//! `INSERT … SELECT FROM UNNEST(…)` runs each row through the executor.
//!
//! The format (PostgreSQL's "Binary Format" of `COPY`): a signature, flags
//! and a header extension length; per row its field count, then per field
//! its length in bytes (-1 for NULL) and its value in the type's binary
//! form (`text` as UTF-8, `bigint` as 8 bytes big-endian); a field count of
//! -1 ends the data.

/// The rows of one `COPY … FROM STDIN (FORMAT binary)`, built in memory,
/// field by field in the statement's column order.
#[derive(Debug)]
pub struct CopyRows {
    buf: Vec<u8>,
    fields: u16,
    /// Fields still due in the current row.
    due: u16,
    rows: u64,
}

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

impl CopyRows {
    /// Rows of `fields` columns each; their fields come through
    /// [`crate::RowFields`], in the statement's column order, row after row.
    pub fn new(fields: u16) -> Self {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        Self {
            buf,
            fields,
            due: 0,
            rows: 0,
        }
    }

    /// The next field (None: NULL), beginning a row at its first.
    fn field(&mut self, value: Option<&[u8]>) -> &mut Self {
        if self.due == 0 {
            self.buf
                .extend_from_slice(&(self.fields as i16).to_be_bytes());
            self.due = self.fields;
            self.rows += 1;
        }
        self.due -= 1;
        match value {
            Some(bytes) => {
                let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
                self.buf.extend_from_slice(&len.to_be_bytes());
                self.buf.extend_from_slice(bytes);
            }
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        self
    }

    /// Rows begun so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The data to send, trailer included.
    pub fn finish(mut self) -> Vec<u8> {
        debug_assert_eq!(self.due, 0, "the last row lacks fields");
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

/// `text` as UTF-8, `bigint` as 8 bytes big-endian.
impl crate::RowFields for CopyRows {
    fn text(&mut self, value: &str) -> &mut Self {
        self.field(Some(value.as_bytes()))
    }

    fn int(&mut self, value: i64) -> &mut Self {
        self.field(Some(&value.to_be_bytes()))
    }

    fn opt_int(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(v) => self.int(v),
            None => self.field(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CopyRows;
    use crate::RowFields as _;

    #[test]
    fn rows_are_laid_out_as_postgres_reads_them() {
        let mut rows = CopyRows::new(3);
        rows.text("Đ1").int(-2).opt_int(None);
        assert_eq!(rows.rows(), 1);
        let bytes = rows.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // flags, extension
        expected.extend_from_slice(&[0, 3]); // three fields
        expected.extend_from_slice(&[0, 0, 0, 3]); // "Đ1" is three bytes of UTF-8
        expected.extend_from_slice("Đ1".as_bytes());
        expected.extend_from_slice(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // NULL
        expected.extend_from_slice(&[0xff, 0xff]); // end of data
        assert_eq!(bytes, expected);
    }

    #[test]
    fn no_rows_is_a_header_and_a_trailer() {
        let bytes = CopyRows::new(2).finish();
        assert_eq!(bytes.len(), 11 + 8 + 2);
    }
}
