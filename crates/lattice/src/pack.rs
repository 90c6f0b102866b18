//! Dense bit packing of indices: index k occupies bits [k·b, (k+1)·b) of the stream, least
//! significant bit first (bit j of the stream is bit j%8 of byte j/8). At b = 48 (Λ24(13)) this is
//! 6 bytes per 24 weights: exactly 2 bits/weight; b = 47 (Λ24(12)) leaves one bit for a gain.

use crate::error::LatticeError;

/// Bytes needed for `count` indices of `bits` bits.
pub fn packed_len(count: usize, bits: u32) -> usize {
    (count * bits as usize).div_ceil(8)
}

fn check_bits(bits: u32) -> Result<(), LatticeError> {
    if (1..=64).contains(&bits) {
        Ok(())
    } else {
        Err(LatticeError::BadBitWidth { bits })
    }
}

/// Packs `indices` of `bits` bits each. An index that does not fit in `bits` is an error.
pub fn pack(indices: &[u64], bits: u32) -> Result<Vec<u8>, LatticeError> {
    check_bits(bits)?;
    let mut out = vec![0u8; packed_len(indices.len(), bits)];
    let mut pos = 0usize;
    for &v in indices {
        if bits < 64 && v >> bits != 0 {
            return Err(LatticeError::IndexTooWide { index: v, bits });
        }
        let mut left = bits as usize;
        let mut val = v;
        while left > 0 {
            let byte = pos / 8;
            let off = pos % 8;
            let take = (8 - off).min(left);
            out[byte] |= ((val & ((1u64 << take) - 1)) as u8) << off;
            val = if take == 64 { 0 } else { val >> take };
            pos += take;
            left -= take;
        }
    }
    Ok(out)
}

/// Inverse of [`pack`]: reads `count` indices of `bits` bits from `bytes`.
pub fn unpack(bytes: &[u8], bits: u32, count: usize) -> Result<Vec<u64>, LatticeError> {
    check_bits(bits)?;
    let need = packed_len(count, bits);
    if bytes.len() < need {
        return Err(LatticeError::ShortBuffer {
            got: bytes.len(),
            need,
            count,
            bits,
        });
    }
    let mut out = Vec::with_capacity(count);
    let mut pos = 0usize;
    for _ in 0..count {
        let mut v = 0u64;
        let mut got = 0usize;
        while got < bits as usize {
            let byte = pos / 8;
            let off = pos % 8;
            let take = (8 - off).min(bits as usize - got);
            let chunk = (bytes[byte] >> off) as u64 & ((1u64 << take) - 1);
            v |= chunk << got;
            got += take;
            pos += take;
        }
        out.push(v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(bits in 1u32..=64, raw in proptest::collection::vec(any::<u64>(), 0..50)) {
            let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            let v: Vec<u64> = raw.iter().map(|x| x & mask).collect();
            let p = pack(&v, bits).unwrap();
            prop_assert_eq!(p.len(), packed_len(v.len(), bits));
            prop_assert_eq!(unpack(&p, bits, v.len()).unwrap(), v);
        }
    }

    #[test]
    fn dense_48_bits_is_six_bytes() {
        let p = pack(&[0xABCD_EF01_2345, 1], 48).unwrap();
        assert_eq!(p.len(), 12);
        assert_eq!(&p[..6], &[0x45, 0x23, 0x01, 0xEF, 0xCD, 0xAB]);
    }

    #[test]
    fn errors() {
        assert!(matches!(pack(&[1 << 47], 47), Err(LatticeError::IndexTooWide { .. })));
        assert!(matches!(pack(&[0], 0), Err(LatticeError::BadBitWidth { bits: 0 })));
        assert!(matches!(unpack(&[0; 5], 48, 1), Err(LatticeError::ShortBuffer { .. })));
    }
}
