//! Honest bits of a GLVQ layer (issue 12, item 5): everything decode needs.
//!
//! Per layer: the codes, Σ_g rows · (width_g/d) · B_g bits (B_g bits per d-vector, packed), and
//! per group the side information
//! - G_g: d² entries in f16 (16·d² bits). f16 is enough: G lives in the unit domain w/s, and the
//!   fit is finished at the stored precision ([`super::learn`]);
//! - s_g (the scale max|W_g|) in f16: 16 bits;
//! - µ_g in f16 when companding: 16 bits;
//! - B_g, the bits per vector: 16 bits (u16; SDBA's choice, stored even when all are equal).
//!
//! d, the group size and the flags are typed fields of the linear's header entry, as every
//! method's block, bits and group are; rows and columns come from the model's config. This is
//! exactly what `LinearMeta::bits_stored` counts for a GLVQ linear of the file (plus rotation
//! seeds, 64 bits each, counted there as for every method).
//!
//! What makes ≤ 2.03 bits/weight possible at N = 2 on the default model (widths 576 and 1536):
//! G_g costs 16·d²/(rows·group) bits per weight, so the side information shrinks with the group
//! size and grows with d². d = 8 with the default group of 128 costs ~0.013; d = 24 needs
//! group=576 (one group per 576 columns), ~0.024 — see the test `default_model_budget`.

use super::groups::Group;

/// Bits of one layer, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BitCount {
    /// Weights of the layer.
    pub weights: u64,
    pub codes: u64,
    pub lattice: u64,
    pub scale: u64,
    pub mu: u64,
    pub widths: u64,
}

impl BitCount {
    /// Counts a layer of `rows` rows with the given groups and bits per d-vector.
    pub fn of(rows: usize, d: usize, groups: &[Group], vector_bits: &[u32], compand: bool) -> BitCount {
        let n = groups.len() as u64;
        BitCount {
            weights: rows as u64 * groups.iter().map(|g| g.width as u64).sum::<u64>(),
            codes: groups
                .iter()
                .zip(vector_bits)
                .map(|(g, &b)| rows as u64 * (g.width / d) as u64 * b as u64)
                .sum(),
            lattice: n * 16 * (d * d) as u64,
            scale: n * 16,
            mu: if compand { n * 16 } else { 0 },
            widths: n * 16,
        }
    }

    /// All stored bits.
    pub fn total(&self) -> u64 {
        self.codes + self.side()
    }

    /// Everything but the codes.
    pub fn side(&self) -> u64 {
        self.lattice + self.scale + self.mu + self.widths
    }

    /// All-in bits per weight.
    pub fn per_weight(&self) -> f64 {
        self.total() as f64 / self.weights.max(1) as f64
    }

    /// Sum of several layers.
    pub fn add(&self, o: &BitCount) -> BitCount {
        BitCount {
            weights: self.weights + o.weights,
            codes: self.codes + o.codes,
            lattice: self.lattice + o.lattice,
            scale: self.scale + o.scale,
            mu: self.mu + o.mu,
            widths: self.widths + o.widths,
        }
    }
}

/// The bits a `rows × cols` layer will take with `params`, before quantizing (SDBA keeps the
/// total of the codes exact, so this is also what [`super::GlvqLayer::bits`] reports).
pub fn plan(rows: usize, cols: usize, params: &super::GlvqParams) -> Result<BitCount, super::GlvqError> {
    params.validate()?;
    let groups = super::groups::layout(cols, params.group, params.d)?;
    let vb = vec![params.vector_bits()?; groups.len()];
    Ok(BitCount::of(rows, params.d, &groups, &vb, params.compand))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glvq::GlvqParams;

    /// The seven linear shapes [rows = out, cols = in] of one block of the default model
    /// (hidden 576, 3 KV heads of 64, MLP 1536); 30 blocks give its 210 layers.
    const SHAPES: [(usize, usize); 7] = [
        (576, 576),
        (192, 576),
        (192, 576),
        (576, 576),
        (1536, 576),
        (1536, 576),
        (576, 1536),
    ];

    fn model_bits(spec: &str) -> BitCount {
        let p = GlvqParams::from_spec(spec).unwrap();
        SHAPES
            .iter()
            .map(|&(r, c)| plan(r, c, &p).unwrap())
            .fold(BitCount::default(), |a, b| a.add(&b))
    }

    #[test]
    fn default_model_budget() {
        // Every stored bit counted by hand for one shape: 576 × 576, d = 8, group 128:
        // 5 groups (4 × 128 + 64), codes 576·576·2, side 5·(16·64 + 16 + 16 + 8) + 64.
        let p = GlvqParams::default();
        let b = plan(576, 576, &p).unwrap();
        assert_eq!(b.codes, 576 * 576 * 2);
        assert_eq!(b.side(), 5 * (16 * 64 + 16 + 16 + 16));
        // The 2.03 budget on the default model's shapes (same ratio for 30 blocks).
        for spec in ["glvq:d=8,bits=2", "glvq:d=8,bits=2,mu=0", "glvq:d=24,bits=2,group=576"] {
            let m = model_bits(spec);
            assert_eq!(m.codes, 2 * m.weights);
            assert!(m.per_weight() <= 2.03, "{spec}: {}", m.per_weight());
        }
        // The default d = 24 group (144) and d = 32 do not fit: G_g is too big for these rows.
        assert!(model_bits("glvq:d=24,bits=2").per_weight() > 2.03);
        assert!(model_bits("glvq:d=32,bits=2").per_weight() > 2.03);
    }
}
