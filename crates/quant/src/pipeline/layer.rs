//! One layer's maths (steps 2-4 of the pipeline): per-matrix rotation seeds, row scales, block
//! LDLQ of one linear, its statistics, and putting restored weights back into the model.

use half::f16;
use llvq_lattice::seed::{finalize, fnv1a, FNV_OFFSET};
use llvq_model::candle_core::{Device, Tensor};
use llvq_model::{Layer, LinearInput, LinearName, Model};

use super::params::{Event, QuantizeParams};
use crate::calib::LayerHessians;
use crate::error::{CandleContext, QuantError, Result};
use crate::format::{self, CodeCache, LinearMeta, LinearStats, QuantLinear};
use crate::ldlq::{self, Factor, LdlqParams};
use crate::method::{Kind, Method};
use llvq_model::hadamard::Rotation;

/// A per-matrix seed from the run seed and a label (SplitMix64 finaliser over FNV-1a).
pub(super) fn derive_seed(seed: u64, label: &str) -> u64 {
    finalize(fnv1a(FNV_OFFSET ^ seed, label.as_bytes()))
}

/// Per-(row, group) scales: the RMS of `w` (`rows × cols`) over each group's real columns,
/// rounded to f16 (the decoder sees exactly what the encoder used). All-zero groups get 1.
pub(super) fn row_scales(w: &[f64], rows: usize, cols: usize, group: usize) -> Vec<u16> {
    let groups = cols.div_ceil(group).max(1);
    let mut out = Vec::with_capacity(rows * groups);
    for r in 0..rows {
        for g in 0..groups {
            let seg = &w[r * cols + g * group..r * cols + ((g + 1) * group).min(cols)];
            let rms = (seg.iter().map(|v| v * v).sum::<f64>() / seg.len().max(1) as f64).sqrt();
            let s = if rms.is_finite() && rms > 0.0 { rms } else { 1.0 };
            out.push(f16::from_f64(s).max(f16::MIN_POSITIVE).to_bits());
        }
    }
    out
}

/// Quantizes one linear: rotate, scale, (block-LDLQ with `factor`), pack. `w` is `rows × cols`
/// in the original domain, freed once its f64 copy exists; `factor` is for the rotated, padded
/// Hessian. Returns the stored form.
pub fn quantize_linear(
    name: &str,
    w: Vec<f32>,
    meta: LinearMeta,
    factor: Option<&Factor>,
    code: &dyn llvq_codes::Quantizer,
    params: &LdlqParams,
) -> Result<QuantLinear> {
    let (rows, cols, pc) = (meta.rows, meta.cols, meta.padded_cols());
    let mut wr: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    drop(w);
    format::rotate(&mut wr, &meta);
    // Scales over the real columns of each group (the padded row has the same groups: `group` is
    // a multiple of the block, and the padding is less than a block).
    let scales = row_scales(&wr, rows, cols, meta.group);
    let mut padded = wr;
    pad_rows(&mut padded, rows, cols, pc);
    let s32: Vec<f32> = scales.iter().map(|&s| f16::from_bits(s).to_f32()).collect();
    let q = ldlq::quantize(&mut padded, rows, pc, factor, code, &s32, meta.group, params, name)?;
    let codes = llvq_lattice::pack::pack(&q.codes, meta.bits)?;
    Ok(QuantLinear {
        name: name.to_string(),
        meta,
        codes,
        scales,
        glvq: None,
    })
}

/// Statistics of a restored weight against the original.
pub(super) fn linear_stats(
    name: &str,
    w: &[f32],
    restored: &[f64],
    rows: usize,
    cols: usize,
    h: &[f64],
    damp: f64,
) -> LinearStats {
    let orig: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    let d: Vec<f64> = restored.iter().zip(&orig).map(|(a, b)| a - b).collect();
    let num = ldlq::proxy_loss(&d, rows, cols, h);
    let den = ldlq::proxy_loss(&orig, rows, cols, h);
    let e2: f64 = d.iter().map(|v| v * v).sum();
    let w2: f64 = orig.iter().map(|v| v * v).sum();
    LinearStats {
        name: name.to_string(),
        rows,
        cols,
        proxy_rel: num / den.max(f64::MIN_POSITIVE),
        mse_rel: e2 / w2.max(f64::MIN_POSITIVE),
        damp,
    }
}

/// Pads the `n × n` Hessian to `np × np` in its own buffer (identity·mean(diag) on the padding:
/// the zero-padded tail columns are independent of the real ones and cost nothing).
pub(super) fn pad_hessian(mut h: Vec<f64>, n: usize, np: usize) -> Vec<f64> {
    if np == n {
        return h;
    }
    let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
    pad_rows(&mut h, n, n, np);
    h.resize(np * np, 0.0);
    for i in n..np {
        h[i * np + i] = if mean > 0.0 { mean } else { 1.0 };
    }
    h
}

/// Widens the `rows × cols` row-major matrix in `m` to `rows × pc` in place, zeros on the right
/// (rows move back to front; the buffer grows by realloc, so no second copy is held).
pub(super) fn pad_rows(m: &mut Vec<f64>, rows: usize, cols: usize, pc: usize) {
    debug_assert!(pc >= cols && m.len() == rows * cols);
    m.resize(rows * pc, 0.0);
    for r in (0..rows).rev() {
        m.copy_within(r * cols..(r + 1) * cols, r * pc);
        m[r * pc + cols..(r + 1) * pc].fill(0.0);
    }
}

pub(super) fn tensor_f32(t: &Tensor, name: &str) -> Result<Vec<f32>> {
    t.flatten_all().ctx(name)?.to_vec1::<f32>().ctx(name)
}

/// Quantizes the seven linears of layer `l` with the Hessians in `hook` (steps 2-4 of the
/// module doc) and puts their restored weights into `model`.
/// `layers` (the model's depth) is for progress events only.
///
/// Memory: each input's sums are freed when its mean is made; the rotated, padded copy is
/// factored in its own buffer (0.45 of a buffer more at the peak), so the widest input peaks at
/// 2.45 n × n f64 buffers with the mean, and holds two while its linears are coded; the
/// statistics come after the factor is freed (`memory::quantize_memory` counts the phases).
pub(super) fn quantize_layer(
    layer: &mut Layer,
    layers: usize,
    mut hook: LayerHessians,
    method: &Method,
    p: &QuantizeParams,
    progress: &mut dyn FnMut(Event<'_>) -> Result<()>,
) -> Result<(Vec<QuantLinear>, Vec<LinearStats>)> {
    let l = layer.index();
    let mut qls = Vec::new();
    let mut stats = Vec::new();
    for input in [LinearInput::Qkv, LinearInput::O, LinearInput::GateUp, LinearInput::Down] {
        let h = hook
            .take(input)
            .ok_or_else(|| QuantError::Calibration(format!("layer {l}: input {input:?} was never observed")))?
            .into_mean();
        let n = (h.len() as f64).sqrt() as usize;
        // One input rotation and one factorisation serve every linear reading this input.
        let rot_in = p
            .rotate
            .input()
            .then(|| derive_seed(p.seed, &format!("{l}.in.{input:?}")));
        let rotated = || {
            let mut hr = h.clone();
            if let Some(s) = rot_in {
                Rotation::new(n, s).conjugate(&mut hr);
            }
            hr
        };
        let block = match &method.kind {
            Kind::Block(block) => block,
            Kind::Glvq(gp) => {
                let hr = rotated();
                for &lin in input.linears() {
                    progress(Event::Layer {
                        layer: l,
                        layers,
                        step: lin.module(),
                    })?;
                    let rot_out = p
                        .rotate
                        .output()
                        .then(|| derive_seed(p.seed, &format!("{l}.out.{}", lin.module())));
                    let (ql, st, restored) = glvq_linear(layer, lin, &h, &hr, gp, rot_in, rot_out)?;
                    set_layer_weight(layer, &ql.name, &restored, &ql.meta)?;
                    qls.push(ql);
                    stats.push(st);
                }
                continue;
            }
        };
        let code = block.code.as_ref();
        let b = code.dim();
        let np = n.div_ceil(b) * b;
        let factor = if block.ldlq {
            progress(Event::Layer {
                layer: l,
                layers,
                step: "factorising",
            })?;
            // Factored in the rotated, padded copy's own buffer; a retry makes it again.
            let mut padded = || pad_hessian(rotated(), n, np);
            Some(Factor::in_place(
                padded(),
                np,
                b,
                &p.ldlq,
                &format!("model.layers.{l} input {input:?}"),
                &mut padded,
            )?)
        } else {
            None
        };
        let damp = factor.as_ref().map_or(0.0, |f| f.damp);
        // Every linear of this input is coded while the factor is held, then the factor is freed
        // before the statistics' working copies exist (same bits: the linears are independent).
        let mut coded = Vec::new();
        for &lin in input.linears() {
            let name = lin.weight_name(l);
            progress(Event::Layer {
                layer: l,
                layers,
                step: lin.module(),
            })?;
            let wt = layer.linear(lin).weight()?;
            let (rows, cols) = wt.dims2().ctx(&name)?;
            let meta = LinearMeta {
                rows,
                cols,
                code: code.spec(),
                method_id: code.method().id(),
                block: b,
                bits: code.bits(),
                group: block.group.unwrap_or(np).min(np),
                rot_in,
                rot_out: p
                    .rotate
                    .output()
                    .then(|| derive_seed(p.seed, &format!("{l}.out.{}", lin.module()))),
                glvq: None,
            };
            let w = tensor_f32(&wt, &name)?;
            coded.push(quantize_linear(&name, w, meta, factor.as_ref(), code, &p.ldlq)?);
        }
        drop(factor);
        for (ql, &lin) in coded.into_iter().zip(input.linears()) {
            let w = tensor_f32(&layer.linear(lin).weight()?, &ql.name)?;
            let restored = ql.decode(code)?;
            let (rows, cols) = (ql.meta.rows, ql.meta.cols);
            stats.push(linear_stats(&ql.name, &w, &restored, rows, cols, &h, damp));
            set_layer_weight(layer, &ql.name, &restored, &ql.meta)?;
            qls.push(ql);
        }
    }
    Ok((qls, stats))
}

/// One linear as GLVQ (issue 12): rotate W as the block codes do, fit the learned lattices
/// with the rotated Hessian `hr` (the undamped proxy; `h` is the original-domain one for the
/// statistics), and store the result. GLVQ's own `ldlq` key gives its block-LDLQ feedback.
#[allow(clippy::too_many_arguments)] // the per-linear inputs of the layer loop
fn glvq_linear(
    layer: &Layer,
    lin: LinearName,
    h: &[f64],
    hr: &[f64],
    gp: &crate::glvq::GlvqParams,
    rot_in: Option<u64>,
    rot_out: Option<u64>,
) -> Result<(QuantLinear, LinearStats, Vec<f64>)> {
    let l = layer.index();
    let name = lin.weight_name(l);
    let wt = layer.linear(lin).weight()?;
    let (rows, cols) = wt.dims2().ctx(&name)?;
    let w = tensor_f32(&wt, &name)?;
    let mut wr: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    let rot = LinearMeta {
        rows,
        cols,
        code: String::new(),
        method_id: 0,
        block: 1,
        bits: 0,
        group: 1,
        rot_in,
        rot_out,
        glvq: None,
    };
    format::rotate(&mut wr, &rot);
    let layer =
        crate::glvq::quantize_layer(&wr, rows, cols, hr, gp).map_err(|e| QuantError::tensor(&name, e.to_string()))?;
    let ql = layer.to_linear(&name, gp, rot_in, rot_out)?;
    // Restored through the runtime's decode: the model goes on with what the file holds.
    let restored = ql.restore(&mut CodeCache::default())?;
    let st = linear_stats(&name, &w, &restored, rows, cols, h, 0.0);
    Ok((ql, st, restored))
}

/// Puts a restored `rows × cols` f64 weight into the model.
pub(super) fn set_weight(model: &mut Model, layer: usize, name: &str, w: &[f64], meta: &LinearMeta) -> Result<()> {
    set_layer_weight(&mut model.layers_mut()[layer], name, w, meta)
}

/// Puts a restored `rows × cols` f64 weight into one decoder layer.
pub(super) fn set_layer_weight(layer: &mut Layer, name: &str, w: &[f64], meta: &LinearMeta) -> Result<()> {
    let index = layer.index();
    let lin = LinearName::ALL
        .into_iter()
        .find(|n| n.weight_name(index) == name)
        .ok_or_else(|| QuantError::tensor(name, format!("not a linear of layer {index}")))?;
    let v: Vec<f32> = w.iter().map(|&x| x as f32).collect();
    let t = Tensor::from_vec(v, (meta.rows, meta.cols), &Device::Cpu).ctx(name)?;
    Ok(layer.set_weight(lin, t)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_in_place_matches_a_fresh_copy() {
        for (rows, cols, pc) in [(1, 1, 1), (3, 5, 8), (7, 24, 24), (5, 30, 48), (40, 33, 48)] {
            let m: Vec<f64> = (0..rows * cols).map(|i| i as f64 + 0.5).collect();
            let mut want = vec![0.0; rows * pc];
            for r in 0..rows {
                want[r * pc..r * pc + cols].copy_from_slice(&m[r * cols..(r + 1) * cols]);
            }
            let mut got = m.clone();
            pad_rows(&mut got, rows, cols, pc);
            assert_eq!(got, want, "{rows}×{cols} → {pc}");
        }
        // The Hessian: the mean of the diagonal on the padding, zero elsewhere.
        let (n, np) = (5, 8);
        let h: Vec<f64> = (0..n * n)
            .map(|i| if i % (n + 1) == 0 { 2.0 + i as f64 } else { 0.25 })
            .collect();
        let p = pad_hessian(h.clone(), n, np);
        let mean = (0..n).map(|i| h[i * n + i]).sum::<f64>() / n as f64;
        for i in 0..np {
            for j in 0..np {
                let want = match (i < n && j < n, i == j) {
                    (true, _) => h[i * n + j],
                    (false, true) => mean,
                    (false, false) => 0.0,
                };
                assert_eq!(p[i * np + j], want, "({i}, {j})");
            }
        }
    }
}
