//! JSON paths, built on the stack as the decoder descends and rendered only when an error
//! names where it happened; and the document's parse.

use std::fmt::Write as _;

use serde_json::Value;

use super::*;

#[derive(Clone, Copy)]
pub(crate) enum Seg {
    Root,
    Key(&'static str),
    Index(usize),
}

#[derive(Clone, Copy)]
pub(crate) struct Path<'a> {
    pub(crate) parent: Option<&'a Path<'a>>,
    pub(crate) seg: Seg,
}

pub(crate) const ROOT: Path<'static> = Path {
    parent: None,
    seg: Seg::Root,
};

impl Path<'_> {
    pub(crate) fn key(&self, key: &'static str) -> Path<'_> {
        Path {
            parent: Some(self),
            seg: Seg::Key(key),
        }
    }

    pub(crate) fn index(&self, index: usize) -> Path<'_> {
        Path {
            parent: Some(self),
            seg: Seg::Index(index),
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut cur = Some(self);
        while let Some(p) = cur {
            segs.push(p.seg);
            cur = p.parent;
        }
        let mut out = String::new();
        for seg in segs.into_iter().rev() {
            match seg {
                Seg::Root => {}
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
            }
        }
        if out.is_empty() { "$".to_owned() } else { out }
    }

    pub(crate) fn err(&self, reason: impl Into<String>) -> JsonError {
        JsonError {
            path: self.render(),
            reason: reason.into(),
        }
    }

    pub(crate) fn expected(&self, what: &str, got: &Value) -> JsonError {
        self.err(format!("expected {what}, got {}", kind(got)))
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A string quoted for an error message, shortened so hostile input can't blow up logs.
pub(crate) fn quoted(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}…", &s[..end])
}

pub(crate) fn parse(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| ROOT.err(format!("invalid JSON: {e}")))
}
