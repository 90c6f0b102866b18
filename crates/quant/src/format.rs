//! Writing the compressed model file (the read side, the typed header and the bit accounting
//! live in `llvq_model::compressed`, next to the runtime that runs the file).
//!
//! The file is deterministic for given inputs (no timings, one metadata key), and is written to a
//! temporary name and renamed into place.

use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
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
