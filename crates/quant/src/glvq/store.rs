//! A quantized GLVQ layer as a linear of the compressed file ([`llvq_model::compressed::glvq`]
//! documents the tensors): the levels packed at their exact bit widths, s_g as the scales, and
//! G_g, µ_g, B_g as side tensors; the typed [`GlvqMeta`] goes into the linear's header entry.

use half::f16;
use llvq_model::compressed::glvq::{pack_levels, GlvqMeta, GlvqSide};

use super::layer::GlvqLayer;
use super::params::GlvqParams;
use crate::error::Result;
use crate::format::{LinearMeta, QuantLinear};

impl GlvqLayer {
    /// The stored form of this layer (already in the rotated domain given by `rot_in`/`rot_out`).
    pub fn to_linear(
        &self,
        name: &str,
        p: &GlvqParams,
        rot_in: Option<u64>,
        rot_out: Option<u64>,
    ) -> Result<QuantLinear> {
        let vb: Vec<u16> = self.groups.iter().map(|g| g.vector_bits as u16).collect();
        let meta = LinearMeta {
            rows: self.rows,
            cols: self.cols,
            code: p.to_spec(),
            method_id: llvq_codes::CodeId::Glvq.id(),
            block: self.d,
            bits: p.vector_bits()?,
            group: self.group,
            rot_in,
            rot_out,
            glvq: Some(GlvqMeta {
                target: p.bits,
                compand: p.compand,
                sdba: p.sdba,
                ldlq: p.ldlq,
            }),
        };
        let side = GlvqSide {
            lattice: self
                .groups
                .iter()
                .flat_map(|g| g.g.iter().map(|v| v.to_bits()))
                .collect(),
            mu: self.groups.iter().filter_map(|g| g.mu.map(f16::to_bits)).collect(),
            vector_bits: vb.clone(),
        };
        Ok(QuantLinear {
            name: name.to_string(),
            codes: pack_levels(&self.levels, self.rows, self.cols, self.d, self.group, &vb),
            scales: self.groups.iter().map(|g| g.scale.to_bits()).collect(),
            glvq: Some(side),
            meta,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glvq::quantize_layer;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    /// The stored linear decodes (runtime read side) to exactly what the encoder reports, its
    /// bits are the encoder's count, and it survives a write/read of the file.
    #[test]
    fn stored_linear_decodes_to_the_encoders_weights() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let (rows, cols) = (24, 80);
        let w: Vec<f64> = (0..rows * cols)
            .map(|i| 0.02 * (1.0 + (i % 7) as f64) * rng.sample::<f64, _>(StandardNormal))
            .collect();
        let h: Vec<f64> = (0..cols * cols)
            .map(|i| if i % (cols + 1) == 0 { 1.0 + (i % 3) as f64 } else { 0.0 })
            .collect();
        for spec in [
            "glvq:group=32,iters=3",
            "glvq:group=32,mu=0,iters=3",
            "glvq:d=16,group=32,bits=1.5,iters=2",
        ] {
            let p = GlvqParams::from_spec(spec).unwrap();
            let l = quantize_layer(&w, rows, cols, &h, &p).unwrap();
            let ql = l
                .to_linear("model.layers.0.mlp.down_proj.weight", &p, None, None)
                .unwrap();
            let got = llvq_model::compressed::glvq::decode_rotated(&ql).unwrap();
            assert_eq!(got, l.decode_f64(), "{spec}");
            let b = ql.meta.bits_stored();
            let e = l.bits();
            assert_eq!((b.code, b.scale + b.side), (e.codes, e.side()), "{spec}");
            // Through the file.
            let dir = std::env::temp_dir().join(format!("llvq-glvq-store-{}", std::process::id()));
            let path = dir.join("g.llvq");
            let c = crate::format::FileContents {
                header: Default::default(),
                linears: vec![ql.clone()],
                plain: vec![],
            };
            crate::format::write(&path, &c).unwrap();
            let r = crate::format::read(&path).unwrap();
            assert_eq!(r.linears, vec![ql.clone()], "{spec}");
            std::fs::remove_dir_all(&dir).ok();
            // A truncated stream or a wrong bit width is an error naming the tensor.
            let mut bad = ql.clone();
            bad.codes.pop();
            let e = llvq_model::compressed::glvq::decode_rotated(&bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains("down_proj") && e.contains("code bytes"), "{e}");
            let mut bad = ql.clone();
            bad.glvq.as_mut().unwrap().vector_bits[0] += 1;
            assert!(llvq_model::compressed::glvq::decode_rotated(&bad).is_err());
        }
    }
}
