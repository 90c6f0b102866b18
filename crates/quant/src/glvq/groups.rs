//! Groups of input columns and their d-vectors (§3.1).
//!
//! Group g holds columns [start, start + width) of every row; row r of the group is read as
//! width/d consecutive d-vectors. Gathered row-major, a group is a `rows × width` matrix whose
//! flat storage is exactly its list of d-vectors in (row, position) order.
//!
//! Tail policy (the summary only speaks of G dividing the width): groups of `group` columns are
//! taken from the left; when `group` does not divide `cols` the remainder forms one last,
//! narrower group, which must still hold whole d-vectors (d | cols mod group), otherwise
//! [`GlvqError::Tail`]. A group wider than the layer becomes one group of all its columns.
//! SDBA moves bits only between full-width groups, so the tail group keeps the target rate.

use super::error::GlvqError;

/// One group of columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    pub start: usize,
    pub width: usize,
}

/// The groups of a layer with `cols` input columns (module doc for the tail policy).
pub fn layout(cols: usize, group: usize, d: usize) -> Result<Vec<Group>, GlvqError> {
    if group == 0 || d == 0 || group % d != 0 {
        return Err(GlvqError::GroupNotMultiple { group, d });
    }
    let tail = cols % group;
    if tail % d != 0 {
        return Err(GlvqError::Tail { cols, group, tail, d });
    }
    Ok((0..cols)
        .step_by(group)
        .map(|start| Group {
            start,
            width: group.min(cols - start),
        })
        .collect())
}

/// Copies group `g` of the `rows × cols` row-major `w` into a `rows × g.width` matrix.
pub fn gather(w: &[f64], rows: usize, cols: usize, g: Group) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows * g.width);
    for r in 0..rows {
        out.extend_from_slice(&w[r * cols + g.start..r * cols + g.start + g.width]);
    }
    out
}

/// The `g.width × g.width` block H_gg of the `cols × cols` row-major `h`.
pub fn block(h: &[f64], cols: usize, g: Group) -> Vec<f64> {
    gather(&h[g.start * cols..(g.start + g.width) * cols], g.width, cols, g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_and_tails() {
        let w = |v: &[Group]| v.iter().map(|g| g.width).collect::<Vec<_>>();
        assert_eq!(w(&layout(1536, 128, 8).unwrap()), vec![128; 12]);
        assert_eq!(w(&layout(576, 128, 8).unwrap()), vec![128, 128, 128, 128, 64]);
        assert_eq!(w(&layout(576, 1024, 32).unwrap()), vec![576]);
        assert_eq!(layout(576, 144, 24).unwrap().len(), 4);
        assert_eq!(
            layout(100, 32, 8),
            Err(GlvqError::Tail {
                cols: 100,
                group: 32,
                tail: 4,
                d: 8
            })
        );
        assert_eq!(layout(96, 20, 8), Err(GlvqError::GroupNotMultiple { group: 20, d: 8 }));
        let g = layout(576, 128, 8).unwrap();
        assert_eq!(g.last().unwrap().start + g.last().unwrap().width, 576);
    }

    #[test]
    fn gather_and_block_pick_the_right_entries() {
        let (rows, cols) = (3, 10);
        let w: Vec<f64> = (0..rows * cols).map(|i| i as f64).collect();
        let g = Group { start: 4, width: 4 };
        assert_eq!(
            gather(&w, rows, cols, g),
            vec![4., 5., 6., 7., 14., 15., 16., 17., 24., 25., 26., 27.]
        );
        let h: Vec<f64> = (0..cols * cols).map(|i| i as f64).collect();
        let b = block(&h, cols, Group { start: 8, width: 2 });
        assert_eq!(b, vec![88., 89., 98., 99.]);
    }
}
