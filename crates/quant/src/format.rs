//! Writing the compressed model file (the read side, the typed header and the bit accounting
//! live in `llvq_model::compressed`, next to the runtime that runs the file).
//!
//! The file is deterministic for given inputs (no timings, one metadata key), and is written to a
//! temporary name and renamed into place.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorInfo, TensorView, View};
use serde_json::Value;

pub use llvq_model::compressed::file::{rotate, unrotate, CODES, INPUT_SCALE, SCALES};
use llvq_model::compressed::glvq;
pub use llvq_model::compressed::header::{SCALE_BITS, SEED_BITS};
pub use llvq_model::compressed::{
    is_llvq_file, linear_bits, read, Bits, CodeCache, FileContents, Header, LinearMeta, LinearStats, Plain,
    QuantLinear, Rotate, Tuned, CODEC_VERSION, FORMAT, FORMAT_VERSION, TOKENIZER_TENSOR,
};

use crate::error::{QuantError, Result};

/// Writes `c` to `path` atomically (temporary file, then rename). The header gets the format
/// fields and one [`LinearMeta`] entry per quantized linear.
pub fn write(path: &Path, c: &FileContents) -> Result<()> {
    write_with(path, c, &[])
}

/// [`write`] with extra safetensors metadata entries beside the `llvq` header (a layer-range
/// part's job description, which a whole model file never has).
pub fn write_with(path: &Path, c: &FileContents, extra: &[(&str, String)]) -> Result<()> {
    let mut header = c.header.clone();
    header.format = FORMAT.into();
    header.format_version = FORMAT_VERSION;
    header.codec_version = CODEC_VERSION.into();
    header.linears = c.linears.iter().map(|l| (l.name.clone(), l.meta.clone())).collect();
    // Through `Value`: keys in sorted order whatever the struct's field order.
    let meta: Value = serde_json::to_value(&header).expect("plain struct");
    let le = |v: &[u16]| -> Vec<u8> { v.iter().flat_map(|s| s.to_le_bytes()).collect() };
    let scale_bytes: Vec<Vec<u8>> = c.linears.iter().map(|l| le(&l.scales)).collect();
    // GLVQ side tensors (lattices, µ, bit widths): llvq_model::compressed::glvq.
    let side_bytes: Vec<Option<[Vec<u8>; 3]>> = c
        .linears
        .iter()
        .map(|l| l.glvq.as_ref().map(|g| [le(&g.lattice), le(&g.mu), le(&g.vector_bits)]))
        .collect();
    let mut views: Vec<(String, TensorView<'_>)> = Vec::new();
    for ((l, sb), side) in c.linears.iter().zip(&scale_bytes).zip(&side_bytes) {
        let groups = l.meta.groups();
        views.push((
            format!("{}{CODES}", l.name),
            tv(&l.name, Dtype::U8, vec![l.codes.len()], &l.codes)?,
        ));
        // Block codes: one scale per row and group; GLVQ: one per group.
        let scale_rows = if l.glvq.is_some() { 1 } else { l.meta.rows };
        views.push((
            format!("{}{SCALES}", l.name),
            tv(&l.name, Dtype::F16, vec![scale_rows, groups], sb)?,
        ));
        if let Some([lat, mu, vb]) = side {
            let d = l.meta.block;
            views.push((
                format!("{}{}", l.name, glvq::LATTICE),
                tv(&l.name, Dtype::F16, vec![groups, d, d], lat)?,
            ));
            if !mu.is_empty() {
                views.push((
                    format!("{}{}", l.name, glvq::MU),
                    tv(&l.name, Dtype::F16, vec![groups], mu)?,
                ));
            }
            views.push((
                format!("{}{}", l.name, glvq::VECTOR_BITS),
                tv(&l.name, Dtype::U16, vec![groups], vb)?,
            ));
        }
    }
    for p in &c.plain {
        views.push((p.name.clone(), tv(&p.name, p.dtype, p.shape.clone(), &p.data)?));
    }
    let mut info = std::collections::HashMap::from([(FORMAT.to_string(), meta.to_string())]);
    info.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let tmp = with_suffix(path, ".tmp");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| QuantError::io(dir, e))?;
    }
    safetensors::serialize_to_file(views, Some(info), &tmp).map_err(|e| QuantError::format(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| QuantError::io(path, e))
}

/// A file written by [`write_with`] (a layer's or a layer range's part), opened for assembly:
/// its header and where its tensors lie, none of their bytes read.
pub struct PartFile {
    pub path: PathBuf,
    pub header: Header,
    /// The safetensors metadata entries beside the `llvq` header (e.g. a range part's job).
    pub metadata: serde_json::Map<String, Value>,
    tensors: Vec<(String, TensorInfo)>,
    /// Offset of the data section in the file.
    data_start: u64,
}

impl PartFile {
    /// Reads the header of `path` (and checks that its tensors lie inside the file).
    pub fn open(path: &Path) -> Result<PartFile> {
        let bad = |r: String| QuantError::format(path, r);
        let mut f = std::fs::File::open(path).map_err(|e| QuantError::io(path, e))?;
        let file_len = f.metadata().map_err(|e| QuantError::io(path, e))?.len();
        let mut len = [0u8; 8];
        f.read_exact(&mut len)
            .map_err(|_| bad("shorter than a safetensors header".into()))?;
        let n = u64::from_le_bytes(len);
        if n > (100 << 20).min(file_len) {
            return Err(bad(format!("a header of {n} bytes")));
        }
        let mut buf = vec![0u8; n as usize];
        f.read_exact(&mut buf).map_err(|_| bad("truncated header".into()))?;
        let v: serde_json::Map<String, Value> = serde_json::from_slice(&buf).map_err(|e| bad(e.to_string()))?;
        let mut metadata = serde_json::Map::new();
        let mut tensors = Vec::new();
        for (k, v) in v {
            if k == "__metadata__" {
                metadata = match v {
                    Value::Object(m) => m,
                    _ => return Err(bad("`__metadata__` is not an object".into())),
                };
            } else {
                let info: TensorInfo = serde_json::from_value(v).map_err(|e| bad(format!("tensor `{k}`: {e}")))?;
                tensors.push((k, info));
            }
        }
        let data_start = 8 + n;
        if let Some((k, _)) = tensors
            .iter()
            .find(|(_, i)| i.data_offsets.0 > i.data_offsets.1 || data_start + i.data_offsets.1 as u64 > file_len)
        {
            return Err(bad(format!("tensor `{k}` lies beyond the end of the file")));
        }
        let text = metadata
            .get(FORMAT)
            .and_then(|x| x.as_str())
            .ok_or_else(|| bad(format!("no `{FORMAT}` metadata: not written by llvq")))?;
        let header = llvq_model::compressed::file::parse_header(path, text)?;
        // Every linear the header names has its codes and scales (checked before anything is
        // copied, so a damaged part is refused by name).
        for name in header.linears.keys() {
            for (suffix, dtype) in [(CODES, Dtype::U8), (SCALES, Dtype::F16)] {
                let t = format!("{name}{suffix}");
                if !tensors.iter().any(|(k, i)| *k == t && i.dtype == dtype) {
                    return Err(bad(format!("no {dtype:?} tensor `{t}` for the linear `{name}`")));
                }
            }
        }
        Ok(PartFile {
            path: path.to_path_buf(),
            header,
            metadata,
            tensors,
            data_start,
        })
    }
}

/// A stored tensor read from its file only when the writer asks for its bytes. A read error
/// is kept in `error` (a [`View`] cannot fail) and turned into the writer's error.
struct LazyTensor<'a> {
    path: &'a Path,
    dtype: Dtype,
    shape: &'a [usize],
    offset: u64,
    len: usize,
    error: &'a RefCell<Option<QuantError>>,
}

impl View for LazyTensor<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let mut buf = vec![0u8; self.len];
        let r = std::fs::File::open(self.path).and_then(|mut f| {
            f.seek(SeekFrom::Start(self.offset))?;
            f.read_exact(&mut buf)
        });
        if let Err(e) = r {
            self.error.borrow_mut().get_or_insert(QuantError::io(self.path, e));
        }
        Cow::Owned(buf)
    }
    fn data_len(&self) -> usize {
        self.len
    }
}

/// Either kind of tensor the assembled file holds.
enum Source<'a> {
    Stored(LazyTensor<'a>),
    Plain(TensorView<'a>),
}

impl View for Source<'_> {
    fn dtype(&self) -> Dtype {
        match self {
            Source::Stored(t) => t.dtype(),
            Source::Plain(t) => t.dtype(),
        }
    }
    fn shape(&self) -> &[usize] {
        match self {
            Source::Stored(t) => t.shape(),
            Source::Plain(t) => View::shape(t),
        }
    }
    fn data(&self) -> Cow<'_, [u8]> {
        match self {
            Source::Stored(t) => t.data(),
            Source::Plain(t) => View::data(t),
        }
    }
    fn data_len(&self) -> usize {
        match self {
            Source::Stored(t) => t.data_len(),
            Source::Plain(t) => View::data_len(t),
        }
    }
}

/// Writes the model file made of every tensor of `parts` (copied as stored, read one at a time
/// while writing, so the whole model's codes are never in memory together: issue 14) and
/// `plain`, atomically. The header is `header` with the parts' linears; the bytes are those
/// [`write`] gives for the same contents read whole (test). A tensor name twice is an error.
pub fn write_assembled(path: &Path, header: Header, parts: &[PartFile], plain: &[Plain]) -> Result<()> {
    write_assembled_with(path, header, parts, plain, &[])
}

/// [`write_assembled`] with extra safetensors metadata entries, as [`write_with`].
pub fn write_assembled_with(
    path: &Path,
    header: Header,
    parts: &[PartFile],
    plain: &[Plain],
    extra: &[(&str, String)],
) -> Result<()> {
    let mut header = header;
    header.format = FORMAT.into();
    header.format_version = FORMAT_VERSION;
    header.codec_version = CODEC_VERSION.into();
    header.linears = parts
        .iter()
        .flat_map(|p| p.header.linears.iter().map(|(k, v)| (k.clone(), v.clone())))
        .collect();
    let meta: Value = serde_json::to_value(&header).expect("plain struct");
    let error = RefCell::new(None);
    let mut views: Vec<(String, Source<'_>)> = Vec::new();
    let mut names = std::collections::BTreeMap::new();
    for p in parts {
        for (name, info) in &p.tensors {
            if let Some(first) = names.insert(name.clone(), p.path.as_path()) {
                return Err(QuantError::format(
                    &p.path,
                    format!("tensor `{name}` is also in {}", first.display()),
                ));
            }
            views.push((
                name.clone(),
                Source::Stored(LazyTensor {
                    path: &p.path,
                    dtype: info.dtype,
                    shape: &info.shape,
                    offset: p.data_start + info.data_offsets.0 as u64,
                    len: info.data_offsets.1 - info.data_offsets.0,
                    error: &error,
                }),
            ));
        }
    }
    for p in plain {
        if let Some(first) = names.insert(p.name.clone(), path) {
            return Err(QuantError::format(
                first,
                format!("tensor `{}` is in a part too", p.name),
            ));
        }
        views.push((
            p.name.clone(),
            Source::Plain(tv(&p.name, p.dtype, p.shape.clone(), &p.data)?),
        ));
    }
    let mut info = std::collections::HashMap::from([(FORMAT.to_string(), meta.to_string())]);
    info.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let tmp = with_suffix(path, ".tmp");
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| QuantError::io(dir, e))?;
    }
    safetensors::serialize_to_file(views, Some(info), &tmp).map_err(|e| QuantError::format(&tmp, e.to_string()))?;
    if let Some(e) = error.into_inner() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| QuantError::io(path, e))
}

/// `path` with `suffix` appended to its file name (`model.llvq` → `model.llvq.tmp`): temporary
/// and part-file names that keep the user's whole name, whatever its extension.
pub fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

fn tv<'a>(name: &str, d: Dtype, s: Vec<usize>, b: &'a [u8]) -> Result<TensorView<'a>> {
    TensorView::new(d, s, b).map_err(|e| QuantError::tensor(name, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
    use llvq_codes::from_spec;

    fn sample() -> FileContents {
        let meta = LinearMeta {
            rows: 3,
            cols: 20,
            code: "e8p12:scale=1.0374103".into(),
            method_id: 4,
            block: 8,
            bits: 16,
            group: 24,
            rot_in: Some(7),
            rot_out: None,
            glvq: None,
        };
        let l = QuantLinear {
            name: "model.layers.0.mlp.down_proj.weight".into(),
            codes: (0..meta.code_bytes()).map(|i| (i * 37 % 251) as u8).collect(),
            scales: vec![f16::from_f32(0.5).to_bits(); 3],
            glvq: None,
            meta,
        };
        let p = Plain::from_f32("model.norm.weight", &[4], &[1.0, 2.0, 3.0, 4.5], false);
        FileContents {
            header: Header {
                method: Some("e8p12".into()),
                ..Header::default()
            },
            linears: vec![l],
            plain: vec![p],
        }
    }

    #[test]
    fn write_read_round_trip_and_determinism() {
        let dir = std::env::temp_dir().join(format!("llvq-format-{}", std::process::id()));
        let (a, b) = (dir.join("a.llvq"), dir.join("b.llvq"));
        let c = sample();
        write(&a, &c).unwrap();
        write(&b, &c).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert!(is_llvq_file(&a));
        let r = read(&a).unwrap();
        assert_eq!(r.linears, c.linears);
        assert_eq!(r.plain[0].to_f32().unwrap(), vec![1.0, 2.0, 3.0, 4.5]);
        assert_eq!(r.header.method.as_deref(), Some("e8p12"));
        // Bits: 3 rows × 3 blocks × 16 bits, 3 scales, one seed.
        assert_eq!(
            c.linears[0].meta.bits_stored(),
            Bits {
                weights: 60,
                code: 144,
                scale: 48,
                seed: 64,
                input_scale: 0,
                side: 0
            }
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Assembling from part files streams the bytes [`write`] writes for their contents read
    /// whole; a tensor in two parts and a part truncated under the writer are errors, and
    /// nothing is written.
    #[test]
    fn assembled_from_parts_equals_the_whole_write() {
        let dir = std::env::temp_dir().join(format!("llvq-format-parts-{}", std::process::id()));
        let (p0, p1) = (dir.join("p0.llvq"), dir.join("p1.llvq"));
        let a = sample();
        let mut b = sample();
        b.linears[0].name = "model.layers.1.mlp.down_proj.weight".into();
        b.linears[0].codes.reverse();
        b.linears[0].meta.rot_out = Some(5);
        b.plain = vec![Plain::from_f32("model.embed_tokens.weight", &[2, 3], &[0.5; 6], true)];
        write_with(&p0, &a, &[("llvq-part", "{}".into())]).unwrap();
        write(&p1, &b).unwrap();
        let header = Header {
            method: Some("e8p12".into()),
            seed: Some(3),
            ..Header::default()
        };
        let extra = Plain::from_f32("lm_head.weight", &[1, 2], &[1.5, -2.0], false);
        let whole = FileContents {
            header: header.clone(),
            linears: [a.linears.clone(), b.linears.clone()].concat(),
            plain: [a.plain.clone(), b.plain.clone(), vec![extra.clone()]].concat(),
        };
        write(&dir.join("whole.llvq"), &whole).unwrap();
        let parts = [PartFile::open(&p1).unwrap(), PartFile::open(&p0).unwrap()];
        assert!(parts[1].metadata.contains_key("llvq-part"));
        let out = dir.join("assembled.llvq");
        write_assembled(&out, header.clone(), &parts, std::slice::from_ref(&extra)).unwrap();
        assert!(std::fs::read(&out).unwrap() == std::fs::read(dir.join("whole.llvq")).unwrap());

        let twice = [PartFile::open(&p0).unwrap(), PartFile::open(&p0).unwrap()];
        let bad = dir.join("bad.llvq");
        let e = write_assembled(&bad, header.clone(), &twice, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("p0.llvq") && e.contains("down_proj"), "{e}");
        let parts = [PartFile::open(&p0).unwrap(), PartFile::open(&p1).unwrap()];
        let len = std::fs::metadata(&p1).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p1)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let e = write_assembled(&bad, header, &parts, &[]).unwrap_err().to_string();
        assert!(e.contains("p1.llvq"), "{e}");
        assert!(!bad.exists() && !with_suffix(&bad, ".tmp").exists());
        // And opening the truncated part names it before any writing.
        let e = PartFile::open(&p1).err().unwrap().to_string();
        assert!(e.contains("p1.llvq") && e.contains("beyond the end"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn corrupt_files_are_errors_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("llvq-format-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.llvq");
        write(&p, &sample()).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("x.llvq"), "{e}");
        std::fs::write(&p, b"not a file").unwrap();
        assert!(read(&p).is_err());
        assert!(!is_llvq_file(&p));
        // A code stream of the wrong length is caught before decoding.
        let mut c = sample();
        c.linears[0].codes.pop();
        let code = from_spec(&c.linears[0].meta.code).unwrap();
        let e = c.linears[0].decode(code.as_ref()).unwrap_err().to_string();
        assert!(e.contains("down_proj") && e.contains("code bytes"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
