//! Many rows as one statement parameter: a JSON array of objects that the
//! database unpacks itself (`json_to_recordset` on PostgreSQL, `json_each`
//! on SQLite). A batch of any size is then one short statement that both
//! dialects prepare once and keep, instead of a statement of thousands of
//! placeholders parsed on every batch.

use std::fmt::Write as _;

/// The SQL type of a column carried in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
}

/// A column: its name in the JSON objects (and in the SELECT list) and its type.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

impl Column {
    pub const fn text(name: &'static str) -> Self {
        Self {
            name,
            kind: Kind::Text,
        }
    }

    pub const fn int(name: &'static str) -> Self {
        Self {
            name,
            kind: Kind::Int,
        }
    }
}

/// `SELECT a, b FROM <rows of parameter $param>`: a row source with the
/// columns' names, to follow `INSERT INTO t (a, b)` or to join against. On
/// SQLite it ends in `WHERE true` so that an `ON CONFLICT` may follow.
pub fn select_from_json(backend: crate::Backend, columns: &[Column], param: usize) -> String {
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    match backend {
        crate::Backend::Postgres => {
            let types: Vec<String> = columns
                .iter()
                .map(|c| {
                    let ty = match c.kind {
                        Kind::Text => "text",
                        Kind::Int => "bigint",
                    };
                    format!("{} {ty}", c.name)
                })
                .collect();
            format!(
                "SELECT {} FROM json_to_recordset(${param}::json) AS x({})",
                names.join(", "),
                types.join(", ")
            )
        }
        crate::Backend::Sqlite => {
            let fields: Vec<String> = columns
                .iter()
                .map(|c| format!("value ->> '{0}' AS {0}", c.name))
                .collect();
            format!(
                "SELECT {} FROM json_each(${param}) WHERE true",
                fields.join(", ")
            )
        }
    }
}

/// `SELECT value FROM <the JSON array of strings in parameter $param>`, for
/// `WHERE key IN (…)` with any number of keys in one prepared statement.
pub fn texts_from_json(backend: crate::Backend, param: usize) -> String {
    match backend {
        crate::Backend::Postgres => format!("SELECT json_array_elements_text(${param}::json)"),
        crate::Backend::Sqlite => format!("SELECT value FROM json_each(${param})"),
    }
}

/// A JSON array of strings.
pub fn json_texts<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(&mut out, v);
    }
    out.push(']');
    out
}

/// Builds the JSON rows for [`select_from_json`]: values are pushed in
/// column order, row after row.
#[derive(Debug)]
pub struct JsonRows {
    columns: &'static [Column],
    out: String,
    rows: usize,
    next: usize,
}

impl crate::RowFields for JsonRows {
    fn text(&mut self, value: &str) -> &mut Self {
        JsonRows::text(self, value)
    }

    fn int(&mut self, value: i64) -> &mut Self {
        JsonRows::int(self, value)
    }

    fn opt_int(&mut self, value: Option<i64>) -> &mut Self {
        JsonRows::opt_int(self, value)
    }
}

impl JsonRows {
    pub fn new(columns: &'static [Column]) -> Self {
        Self {
            columns,
            out: String::from("["),
            rows: 0,
            next: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    fn key(&mut self, kind: Kind) {
        let column = self.columns[self.next];
        debug_assert_eq!(
            column.kind, kind,
            "column {} takes {:?}",
            column.name, column.kind
        );
        if self.next == 0 {
            if self.rows > 0 {
                self.out.push(',');
            }
            self.out.push('{');
        } else {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(column.name);
        self.out.push_str("\":");
    }

    fn done(&mut self) {
        self.next += 1;
        if self.next == self.columns.len() {
            self.out.push('}');
            self.next = 0;
            self.rows += 1;
        }
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        self.key(Kind::Text);
        write_string(&mut self.out, value);
        self.done();
        self
    }

    pub fn int(&mut self, value: i64) -> &mut Self {
        self.key(Kind::Int);
        // Writing to a String cannot fail.
        let _ = write!(self.out, "{value}");
        self.done();
        self
    }

    pub fn opt_int(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(v) => self.int(v),
            None => {
                self.key(Kind::Int);
                self.out.push_str("null");
                self.done();
                self
            }
        }
    }

    /// The JSON text; every row must be complete.
    pub fn finish(mut self) -> String {
        debug_assert_eq!(self.next, 0, "a row was left incomplete");
        self.out.push(']');
        self.out
    }
}

fn write_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLUMNS: &[Column] = &[Column::text("id"), Column::int("n")];

    #[test]
    fn rows_are_objects_in_column_order() {
        let mut rows = JsonRows::new(COLUMNS);
        rows.text("a\"b\\c\u{1}").int(-3);
        rows.text("đ").opt_int(None);
        assert_eq!(rows.rows(), 2);
        assert_eq!(
            rows.finish(),
            r#"[{"id":"a\"b\\c\u0001","n":-3},{"id":"đ","n":null}]"#
        );
        assert_eq!(JsonRows::new(COLUMNS).finish(), "[]");
    }

    #[test]
    fn sources_name_the_columns() {
        assert_eq!(
            select_from_json(crate::Backend::Postgres, COLUMNS, 1),
            "SELECT id, n FROM json_to_recordset($1::json) AS x(id text, n bigint)"
        );
        assert_eq!(
            select_from_json(crate::Backend::Sqlite, COLUMNS, 2),
            "SELECT value ->> 'id' AS id, value ->> 'n' AS n FROM json_each($2) WHERE true"
        );
        assert_eq!(json_texts(["x", "y\""]), r#"["x","y\""]"#);
    }
}
