//! A minimal reader of the Arrow IPC *stream* format, enough for Hugging Face `save_to_disk`
//! files of plain tables (MMLU's `question`, `subject`, `choices`, `answer`).
//!
//! A stream is a sequence of encapsulated messages: `0xFFFFFFFF`, a little-endian `i32`
//! metadata length, a FlatBuffers `Message` (Schema or RecordBatch), then the message body;
//! `0xFFFFFFFF 0x00000000` ends it (Arrow columnar format spec, "IPC Streaming Format").
//! Supported column types: signed and unsigned integers, `Utf8` / `LargeUtf8`, and `List` /
//! `LargeList` of those, without nulls, dictionaries or body compression; anything else is an
//! error naming the column. Written here rather than taken from `arrow-ipc` (which pulls in
//! the arrow-rs array stack and `flatbuffers`) because MMLU needs only these four columns.
//! Every read is bounds-checked: a broken file gives an error, never a panic.

/// A column: integers, strings, or lists (offsets into a child column).
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Int(Vec<i64>),
    Utf8(Vec<String>),
    /// Row `i` holds child rows `offsets[i]..offsets[i + 1]`.
    List {
        offsets: Vec<usize>,
        child: Box<Column>,
    },
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Int(v) => v.len(),
            Column::Utf8(v) => v.len(),
            Column::List { offsets, .. } => offsets.len().saturating_sub(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn append(&mut self, other: Column) -> Result<(), String> {
        match (self, other) {
            (Column::Int(a), Column::Int(b)) => a.extend(b),
            (Column::Utf8(a), Column::Utf8(b)) => a.extend(b),
            (Column::List { offsets, child }, Column::List { offsets: o2, child: c2 }) => {
                let base = child.len();
                offsets.extend(o2.iter().skip(1).map(|&o| base + o - o2[0]));
                child.append(*c2)?;
            }
            _ => return Err("record batches disagree on a column's type".into()),
        }
        Ok(())
    }
}

/// A table read from a stream: column names and columns of equal length.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub names: Vec<String>,
    pub columns: Vec<Column>,
    pub rows: usize,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.names.iter().position(|n| n == name).map(|i| &self.columns[i])
    }
}

/// Column types of the schema, with what the reader needs of each.
#[derive(Debug, Clone)]
enum Type {
    Int { bytes: usize, signed: bool },
    Utf8 { large: bool },
    List { large: bool, child: Box<Type> },
}

/// A FlatBuffers table inside `buf` (at `pos`); every accessor is bounds-checked.
#[derive(Clone, Copy)]
struct Fb<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn get<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], String> {
    at.checked_add(N)
        .and_then(|end| buf.get(at..end))
        .map(|s| s.try_into().expect("length N"))
        .ok_or_else(|| format!("flatbuffer read at {at} past its end ({} bytes)", buf.len()))
}

fn u32_at(buf: &[u8], at: usize) -> Result<usize, String> {
    Ok(u32::from_le_bytes(get(buf, at)?) as usize)
}

impl<'a> Fb<'a> {
    fn root(buf: &'a [u8]) -> Result<Fb<'a>, String> {
        Ok(Fb {
            buf,
            pos: u32_at(buf, 0)?,
        })
    }

    /// Where field `slot` is stored, or `None` when absent (its default applies).
    fn field(&self, slot: usize) -> Result<Option<usize>, String> {
        let soff = i32::from_le_bytes(get(self.buf, self.pos)?) as i64;
        let vt = usize::try_from(self.pos as i64 - soff).map_err(|_| "bad vtable offset".to_string())?;
        let vsize = u16::from_le_bytes(get(self.buf, vt)?) as usize;
        let at = 4 + 2 * slot;
        if at + 2 > vsize {
            return Ok(None);
        }
        let off = u16::from_le_bytes(get(self.buf, vt + at)?) as usize;
        Ok((off != 0).then_some(self.pos + off))
    }

    fn u8(&self, slot: usize) -> Result<u8, String> {
        self.field(slot)?.map_or(Ok(0), |p| Ok(get::<1>(self.buf, p)?[0]))
    }

    fn i32(&self, slot: usize) -> Result<i32, String> {
        self.field(slot)?
            .map_or(Ok(0), |p| Ok(i32::from_le_bytes(get(self.buf, p)?)))
    }

    fn i64(&self, slot: usize) -> Result<i64, String> {
        self.field(slot)?
            .map_or(Ok(0), |p| Ok(i64::from_le_bytes(get(self.buf, p)?)))
    }

    /// Target of an offset field (table, vector or string).
    fn deref(&self, slot: usize) -> Result<Option<usize>, String> {
        match self.field(slot)? {
            Some(p) => Ok(Some(p + u32_at(self.buf, p)?)),
            None => Ok(None),
        }
    }

    fn table(&self, slot: usize) -> Result<Option<Fb<'a>>, String> {
        Ok(self.deref(slot)?.map(|pos| Fb { buf: self.buf, pos }))
    }

    /// A vector field: (first element, count); empty when absent.
    fn vector(&self, slot: usize) -> Result<(usize, usize), String> {
        match self.deref(slot)? {
            Some(v) => Ok((v + 4, u32_at(self.buf, v)?)),
            None => Ok((0, 0)),
        }
    }

    fn vector_tables(&self, slot: usize) -> Result<Vec<Fb<'a>>, String> {
        let (start, n) = self.vector(slot)?;
        (0..n)
            .map(|i| {
                let e = start + 4 * i;
                Ok(Fb {
                    buf: self.buf,
                    pos: e + u32_at(self.buf, e)?,
                })
            })
            .collect()
    }

    /// A vector of structs of two `i64` (Arrow's `FieldNode` and `Buffer`).
    fn vector_pairs(&self, slot: usize) -> Result<Vec<(i64, i64)>, String> {
        let (start, n) = self.vector(slot)?;
        (0..n)
            .map(|i| {
                let a = start + 16 * i;
                Ok((
                    i64::from_le_bytes(get(self.buf, a)?),
                    i64::from_le_bytes(get(self.buf, a + 8)?),
                ))
            })
            .collect()
    }

    fn string(&self, slot: usize) -> Result<String, String> {
        match self.deref(slot)? {
            Some(s) => {
                let n = u32_at(self.buf, s)?;
                let bytes = self
                    .buf
                    .get(s + 4..s + 4 + n)
                    .ok_or("string past the end of its flatbuffer")?;
                String::from_utf8(bytes.to_vec()).map_err(|_| "field name is not UTF-8".to_string())
            }
            None => Ok(String::new()),
        }
    }
}

/// `Field` → (name, type). Slots: name 0, nullable 1, type_type 2, type 3, dictionary 4,
/// children 5 (Schema.fbs).
fn field_type(f: &Fb) -> Result<(String, Type), String> {
    let name = f.string(0)?;
    if f.field(4)?.is_some() {
        return Err(format!("column `{name}`: dictionary-encoded columns are not supported"));
    }
    let ty = match f.u8(2)? {
        2 => {
            let t = f
                .table(3)?
                .ok_or_else(|| format!("column `{name}`: Int without parameters"))?;
            let bits = t.i32(0)?;
            if ![8, 16, 32, 64].contains(&bits) {
                return Err(format!("column `{name}`: integer width {bits}"));
            }
            Type::Int {
                bytes: bits as usize / 8,
                signed: t.u8(1)? != 0,
            }
        }
        5 => Type::Utf8 { large: false },
        20 => Type::Utf8 { large: true },
        code @ (12 | 21) => {
            let children = f.vector_tables(5)?;
            if children.len() != 1 {
                return Err(format!("column `{name}`: a list with {} children", children.len()));
            }
            let (_, child) = field_type(&children[0])?;
            if matches!(child, Type::List { .. }) {
                return Err(format!("column `{name}`: lists of lists are not supported"));
            }
            Type::List {
                large: code == 21,
                child: Box::new(child),
            }
        }
        code => return Err(format!("column `{name}`: Arrow type {code} is not supported")),
    };
    Ok((name, ty))
}

/// Walks a record batch's field nodes and buffers in schema pre-order.
struct Batch<'a> {
    body: &'a [u8],
    nodes: std::vec::IntoIter<(i64, i64)>,
    buffers: std::vec::IntoIter<(i64, i64)>,
}

impl<'a> Batch<'a> {
    fn node(&mut self, name: &str) -> Result<usize, String> {
        let (len, nulls) = self
            .nodes
            .next()
            .ok_or_else(|| format!("column `{name}`: missing field node"))?;
        if nulls != 0 {
            return Err(format!("column `{name}`: {nulls} nulls (not supported)"));
        }
        usize::try_from(len).map_err(|_| format!("column `{name}`: length {len}"))
    }

    fn buffer(&mut self, name: &str) -> Result<&'a [u8], String> {
        let (off, len) = self
            .buffers
            .next()
            .ok_or_else(|| format!("column `{name}`: missing buffer"))?;
        let (o, l) = (usize::try_from(off), usize::try_from(len));
        match (o, l) {
            (Ok(o), Ok(l)) if o.checked_add(l).is_some_and(|e| e <= self.body.len()) => Ok(&self.body[o..o + l]),
            _ => Err(format!(
                "column `{name}`: buffer {off}+{len} outside the body ({} bytes)",
                self.body.len()
            )),
        }
    }

    /// `n + 1` offsets (i32 or i64), checked to be non-decreasing and non-negative.
    fn offsets(&mut self, name: &str, n: usize, large: bool) -> Result<Vec<usize>, String> {
        let b = self.buffer(name)?;
        let w = if large { 8 } else { 4 };
        if n == 0 && b.is_empty() {
            return Ok(vec![0]);
        }
        if n.checked_add(1)
            .and_then(|m| m.checked_mul(w))
            .is_none_or(|need| b.len() < need)
        {
            return Err(format!("column `{name}`: offsets buffer too short"));
        }
        let offs: Vec<i64> = (0..=n)
            .map(|i| {
                let s = &b[i * w..(i + 1) * w];
                if large {
                    i64::from_le_bytes(s.try_into().expect("8 bytes"))
                } else {
                    i32::from_le_bytes(s.try_into().expect("4 bytes")) as i64
                }
            })
            .collect();
        if offs[0] < 0 || offs.windows(2).any(|p| p[1] < p[0]) {
            return Err(format!("column `{name}`: offsets are not increasing"));
        }
        Ok(offs.into_iter().map(|o| o as usize).collect())
    }

    fn column(&mut self, name: &str, ty: &Type) -> Result<Column, String> {
        let n = self.node(name)?;
        self.buffer(name)?; // validity bitmap (no nulls)
        match ty {
            Type::Int { bytes, signed } => {
                let b = self.buffer(name)?;
                if n.checked_mul(*bytes).is_none_or(|need| b.len() < need) {
                    return Err(format!("column `{name}`: data buffer too short"));
                }
                let v = (0..n)
                    .map(|i| {
                        let mut raw = [0u8; 8];
                        raw[..*bytes].copy_from_slice(&b[i * bytes..(i + 1) * bytes]);
                        let u = u64::from_le_bytes(raw);
                        let shift = 64 - 8 * *bytes as u32;
                        if *signed {
                            ((u << shift) as i64) >> shift
                        } else {
                            u as i64
                        }
                    })
                    .collect();
                Ok(Column::Int(v))
            }
            Type::Utf8 { large } => {
                let offs = self.offsets(name, n, *large)?;
                let data = self.buffer(name)?;
                if offs[n] > data.len() {
                    return Err(format!("column `{name}`: string data buffer too short"));
                }
                let v = offs
                    .windows(2)
                    .map(|w| {
                        std::str::from_utf8(&data[w[0]..w[1]])
                            .map(str::to_string)
                            .map_err(|_| format!("column `{name}`: a value is not UTF-8"))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Column::Utf8(v))
            }
            Type::List { large, child } => {
                let offs = self.offsets(name, n, *large)?;
                let c = self.column(name, child)?;
                if offs[n] > c.len() {
                    return Err(format!("column `{name}`: list offsets past its {} values", c.len()));
                }
                let base = offs[0];
                Ok(Column::List {
                    offsets: offs.iter().map(|o| o - base).collect(),
                    child: Box::new(c),
                })
            }
        }
    }
}

/// Message header types (Message.fbs `MessageHeader`).
const SCHEMA: u8 = 1;
const RECORD_BATCH: u8 = 3;

/// Read a whole Arrow IPC stream into a [`Table`]; the error says what is wrong and where.
pub fn read_stream(bytes: &[u8]) -> Result<Table, String> {
    let mut off = 0usize;
    let mut schema: Option<Vec<(String, Type)>> = None;
    let mut columns: Vec<Column> = Vec::new();
    let mut rows = 0usize;
    let i32_at = |at: usize| -> Result<i32, String> {
        get::<4>(bytes, at)
            .map(i32::from_le_bytes)
            .map_err(|_| format!("truncated at byte {at}"))
    };
    loop {
        if off + 4 > bytes.len() {
            break; // a stream may end without the end-of-stream marker
        }
        let mut len = i32_at(off)?;
        off += 4;
        if len == -1 {
            len = i32_at(off)?;
            off += 4;
        }
        if len == 0 {
            break;
        }
        let len = usize::try_from(len).map_err(|_| format!("negative message length at byte {}", off - 4))?;
        let meta = bytes
            .get(off..off + len)
            .ok_or_else(|| format!("message at byte {off} is truncated"))?;
        let at = off;
        off += len;
        let msg = Fb::root(meta).map_err(|e| format!("message at byte {at}: {e}"))?;
        let header_type = msg.u8(1).map_err(|e| format!("message at byte {at}: {e}"))?;
        let body_len = msg.i64(3).map_err(|e| format!("message at byte {at}: {e}"))?;
        let body_len =
            usize::try_from(body_len).map_err(|_| format!("message at byte {at}: body length {body_len}"))?;
        let body = off
            .checked_add(body_len)
            .and_then(|end| bytes.get(off..end))
            .ok_or_else(|| format!("message body at byte {off} is truncated"))?;
        off += body_len;
        let header = msg
            .table(2)
            .map_err(|e| format!("message at byte {at}: {e}"))?
            .ok_or_else(|| format!("message at byte {at} has no header"))?;
        let ctx = |e: String| format!("message at byte {at}: {e}");
        match header_type {
            SCHEMA => {
                let fields = header.vector_tables(1).map_err(ctx)?;
                let fields = fields
                    .iter()
                    .map(field_type)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(ctx)?;
                columns = fields
                    .iter()
                    .map(|(_, t)| match t {
                        Type::Int { .. } => Column::Int(Vec::new()),
                        Type::Utf8 { .. } => Column::Utf8(Vec::new()),
                        Type::List { child, .. } => Column::List {
                            offsets: vec![0],
                            child: Box::new(match **child {
                                Type::Int { .. } => Column::Int(Vec::new()),
                                _ => Column::Utf8(Vec::new()),
                            }),
                        },
                    })
                    .collect();
                schema = Some(fields);
            }
            RECORD_BATCH => {
                let fields = schema
                    .as_ref()
                    .ok_or_else(|| ctx("record batch before the schema".into()))?;
                if header.field(3).map_err(ctx)?.is_some() {
                    return Err(ctx("compressed record batches are not supported".into()));
                }
                let n = usize::try_from(header.i64(0).map_err(ctx)?).map_err(|_| ctx("negative row count".into()))?;
                let mut batch = Batch {
                    body,
                    nodes: header.vector_pairs(1).map_err(ctx)?.into_iter(),
                    buffers: header.vector_pairs(2).map_err(ctx)?.into_iter(),
                };
                for ((name, ty), col) in fields.iter().zip(columns.iter_mut()) {
                    let c = batch.column(name, ty).map_err(ctx)?;
                    if c.len() != n {
                        return Err(ctx(format!("column `{name}` has {} rows, the batch {n}", c.len())));
                    }
                    col.append(c).map_err(ctx)?;
                }
                rows += n;
            }
            other => return Err(ctx(format!("message type {other} is not supported"))),
        }
    }
    let fields = schema.ok_or("no schema message (not an Arrow IPC stream)")?;
    Ok(Table {
        names: fields.into_iter().map(|(n, _)| n).collect(),
        columns,
        rows,
    })
}
