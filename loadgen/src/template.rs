//! Pre-encoded requests: a pool of prost-encoded traces requests with the byte offsets of
//! every id and timestamp, found once by a small protobuf wire-format walk, so each send
//! copies a pooled request and patches it in place.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use rand::Rng;
use rand::rngs::SmallRng;

use crate::error::LoadgenError;
use crate::topology::*;

/// A prost-encoded traces request plus the byte offsets of every id and
/// timestamp in it, so copies can be made unique and current cheaply.
#[derive(Clone, Debug)]
pub(crate) struct Template {
    pub(crate) bytes: Bytes,
    pub(crate) trace_ids: Vec<u32>,
    pub(crate) span_ids: Vec<u32>,
    pub(crate) times: Vec<u32>,
    pub(crate) max_time: u64,
    pub(crate) spans: u64,
}

impl Template {
    pub(crate) fn new(req: &ExportTraceServiceRequest) -> Result<Self, LoadgenError> {
        let bytes = req.encode_to_vec();
        let mut t = Template {
            bytes: Bytes::new(),
            trace_ids: Vec::new(),
            span_ids: Vec::new(),
            times: Vec::new(),
            max_time: 0,
            spans: span_count(req),
        };
        if u32::try_from(bytes.len()).is_err() {
            return Err(LoadgenError::Encode("request larger than 4 GiB".to_owned()));
        }
        scan_request(&bytes, &mut t)
            .ok_or_else(|| LoadgenError::Encode("could not walk the encoded request".to_owned()))?;
        t.max_time = t
            .times
            .iter()
            .map(|&o| read_fixed64(&bytes, o as usize))
            .max()
            .unwrap_or(0);
        t.bytes = Bytes::from(bytes);
        Ok(t)
    }

    /// A copy with fresh ids (XOR with a random salt: consistent parent
    /// links, still unique) whose newest timestamp is `now_unix_nano`.
    pub(crate) fn instantiate(&self, now_unix_nano: u64, rng: &mut SmallRng) -> Bytes {
        let mut buf = self.bytes.to_vec();
        let trace_salt: [u8; 16] = rng.random();
        let span_salt: [u8; 8] = rng.random();
        for &o in &self.trace_ids {
            let o = o as usize;
            for (b, s) in buf[o..o + 16].iter_mut().zip(trace_salt) {
                *b ^= s;
            }
        }
        for &o in &self.span_ids {
            let o = o as usize;
            for (b, s) in buf[o..o + 8].iter_mut().zip(span_salt) {
                *b ^= s;
            }
        }
        let delta = (i128::from(now_unix_nano) - i128::from(self.max_time))
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        for &o in &self.times {
            let o = o as usize;
            let v = read_fixed64(&buf, o).wrapping_add_signed(delta);
            buf[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
        Bytes::from(buf)
    }
}

pub(crate) fn read_fixed64(buf: &[u8], offset: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&buf[offset..offset + 8]);
    u64::from_le_bytes(a)
}

pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
        if shift >= 64 {
            return None;
        }
    }
}

/// Walk the fields of the message in `buf[start..end]`, calling
/// `f(field_number, wire_type, value_start, value_end)` for each.
pub(crate) fn walk_fields(
    buf: &[u8],
    start: usize,
    end: usize,
    mut f: impl FnMut(u64, u8, usize, usize) -> Option<()>,
) -> Option<()> {
    let mut pos = start;
    while pos < end {
        let key = read_varint(buf, &mut pos)?;
        let field = key >> 3;
        let wire = (key & 7) as u8;
        let value_start;
        match wire {
            0 => {
                value_start = pos;
                read_varint(buf, &mut pos)?;
            }
            1 => {
                value_start = pos;
                pos = pos.checked_add(8)?;
            }
            2 => {
                let len = usize::try_from(read_varint(buf, &mut pos)?).ok()?;
                value_start = pos;
                pos = pos.checked_add(len)?;
            }
            5 => {
                value_start = pos;
                pos = pos.checked_add(4)?;
            }
            _ => return None,
        }
        if pos > end {
            return None;
        }
        f(field, wire, value_start, pos)?;
    }
    Some(())
}

pub(crate) fn offset32(o: usize) -> Option<u32> {
    u32::try_from(o).ok()
}

pub(crate) fn scan_request(buf: &[u8], t: &mut Template) -> Option<()> {
    // ExportTraceServiceRequest.resource_spans = 1
    walk_fields(buf, 0, buf.len(), |field, wire, s, e| {
        if field == 1 && wire == 2 {
            // ResourceSpans.scope_spans = 2
            walk_fields(buf, s, e, |field, wire, s, e| {
                if field == 2 && wire == 2 {
                    // ScopeSpans.spans = 2
                    walk_fields(buf, s, e, |field, wire, s, e| {
                        if field == 2 && wire == 2 {
                            scan_span(buf, s, e, t)?;
                        }
                        Some(())
                    })?;
                }
                Some(())
            })?;
        }
        Some(())
    })
}

pub(crate) fn scan_span(buf: &[u8], start: usize, end: usize, t: &mut Template) -> Option<()> {
    walk_fields(buf, start, end, |field, wire, s, e| {
        match (field, wire, e - s) {
            // trace_id = 1
            (1, 2, 16) => t.trace_ids.push(offset32(s)?),
            // span_id = 2, parent_span_id = 4
            (2 | 4, 2, 8) => t.span_ids.push(offset32(s)?),
            // start_time_unix_nano = 7, end_time_unix_nano = 8 (fixed64)
            (7 | 8, 1, 8) => t.times.push(offset32(s)?),
            // events = 11: Event.time_unix_nano = 1 (fixed64)
            (11, 2, _) => walk_fields(buf, s, e, |field, wire, s, _| {
                if field == 1 && wire == 1 {
                    t.times.push(offset32(s)?);
                }
                Some(())
            })?,
            // links = 13: Link.trace_id = 1, Link.span_id = 2
            (13, 2, _) => walk_fields(buf, s, e, |field, wire, s, e| {
                match (field, wire, e - s) {
                    (1, 2, 16) => t.trace_ids.push(offset32(s)?),
                    (2, 2, 8) => t.span_ids.push(offset32(s)?),
                    _ => {}
                }
                Some(())
            })?,
            _ => {}
        }
        Some(())
    })
}

/// Keep pre-encoded pools within roughly this many spans of memory.
pub(crate) const POOL_SPAN_BUDGET: usize = 65_536;
pub(crate) const POOL_MAX_REQUESTS: usize = 64;
pub(crate) const POOL_MIN_REQUESTS: usize = 4;

pub(crate) fn build_pool(
    topo: &mut Topology,
    batch: usize,
    base: u64,
) -> Result<Vec<Template>, LoadgenError> {
    let n = (POOL_SPAN_BUDGET / batch.max(1)).clamp(POOL_MIN_REQUESTS, POOL_MAX_REQUESTS);
    (0..n)
        .map(|_| Template::new(&topo.traces_request(batch, base)))
        .collect()
}
