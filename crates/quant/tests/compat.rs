//! Files written before the issue-15 refactor (one seeded generator, split modules, the code
//! registry) still decode to the same weights, bit for bit.
//!
//! `tests/data/compat-657861e/` was written once by commit 657861e, the last commit before the
//! refactor: a tiny Llama-style model (48 wide, MLP 30, so the MLP's rotations use the seeded
//! fallback mixer and the Leech blocks have a zero-padded tail) quantized with four methods and
//! rotation sides, and beside each `.llvq` the f32 weights that commit's loader restored
//! (`NAME.weights.safetensors`, keyed by HF weight name). Today's loader must restore exactly
//! those bits: the stored rotation seeds must still give the same signs and Kronecker factors,
//! and the stored SPECs the same codes.
use std::path::PathBuf;

use llvq_model::LinearName;
use llvq_quant::load_llvq;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/compat-657861e")
}

#[test]
fn files_of_the_previous_format_decode_to_the_same_weights() {
    for name in ["sg-both", "ss-input", "e8p12-output", "gptq-both"] {
        let dir = fixture_dir();
        let (model, _, header) = load_llvq(&dir.join(format!("{name}.llvq"))).unwrap();
        let expected_bytes = std::fs::read(dir.join(format!("{name}.weights.safetensors"))).unwrap();
        let expected = safetensors::SafeTensors::deserialize(&expected_bytes).unwrap();
        let mut checked = 0;
        for (l, layer) in model.layers().iter().enumerate() {
            for lin in LinearName::ALL {
                let key = lin.weight_name(l);
                let want = expected.tensor(&key).unwrap_or_else(|e| panic!("{name}: {key}: {e}"));
                let got = layer.linear(lin).weight().unwrap();
                assert_eq!(got.dims(), want.shape(), "{name}: {key}");
                let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
                let want: Vec<f32> = want
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect();
                let differ = got
                    .iter()
                    .zip(&want)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(differ, 0, "{name}: {key}: {differ} of {} weights differ", want.len());
                checked += 1;
            }
        }
        assert_eq!(checked, 7 * model.layers().len(), "{name} ({:?})", header.method);
        assert!(checked > 0);
    }
}
