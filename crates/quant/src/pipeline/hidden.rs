//! The calibration windows' hidden states between layers: the only state a run carries from one
//! decoder layer to the next (issue 14, item 1). They live in memory, or in a scratch file when
//! they would not fit ([`Placement`]), with one window in memory at a time. Both give the same
//! bits: a window's forward pass does not depend on where the other windows are.
//!
//! A spilled store is one file of little-endian f32 windows, read and written front to back
//! (each layer reads one file and writes the next), removed when the store is dropped.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use llvq_model::candle_core::{DType, Device, Tensor};

use crate::error::{QuantError, Result};

/// Where the hidden states live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// On disk when the in-memory estimate exceeds `--max-memory` or, without one, the memory
    /// the system has available; in memory otherwise.
    #[default]
    Auto,
    Memory,
    Disk,
}

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Placement::Auto => "auto",
            Placement::Memory => "memory",
            Placement::Disk => "disk",
        }
    }

    /// Whether to spill, given the run's estimates in memory and with a spill, its limit and
    /// the memory available (`None` where the OS does not say).
    pub fn spill(self, in_memory: u64, max_memory: Option<u64>, available: Option<u64>) -> bool {
        match self {
            Placement::Memory => false,
            Placement::Disk => true,
            Placement::Auto => max_memory.or(available).is_some_and(|limit| in_memory > limit),
        }
    }
}

impl std::str::FromStr for Placement {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Placement, String> {
        [Placement::Auto, Placement::Memory, Placement::Disk]
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("activations {s:?} must be auto, memory or disk"))
    }
}

/// The hidden states of every calibration window at the input of the current layer.
pub struct Hidden {
    store: Store,
}

enum Store {
    Memory(Vec<Tensor>),
    Disk(Spill),
}

/// A spilled store: the file, the shape of each window, and the directory for the next one.
struct Spill {
    path: PathBuf,
    dir: PathBuf,
    dims: Vec<Vec<usize>>,
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Distinct scratch names within one process (several stores may share a directory).
static NEXT: AtomicU64 = AtomicU64::new(0);

impl Spill {
    fn writer(dir: &Path) -> Result<(PathBuf, BufWriter<File>)> {
        std::fs::create_dir_all(dir).map_err(|e| QuantError::io(dir, e))?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("hidden-{}-{n}.f32", std::process::id()));
        let f = File::create(&path).map_err(|e| QuantError::io(&path, e))?;
        Ok((path, BufWriter::with_capacity(1 << 20, f)))
    }
}

fn write_window(w: &mut BufWriter<File>, path: &Path, x: &Tensor) -> Result<Vec<usize>> {
    let v = x
        .to_dtype(DType::F32)
        .and_then(|x| x.flatten_all())
        .and_then(|x| x.to_vec1::<f32>())
        .map_err(|e| QuantError::tensor("hidden states", e.to_string()))?;
    let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
    w.write_all(&bytes).map_err(|e| QuantError::io(path, e))?;
    Ok(x.dims().to_vec())
}

impl Hidden {
    /// Collects the windows `xs` (e.g. as they are embedded) in memory, or into a scratch file
    /// in `spill` when given.
    pub fn collect(xs: impl Iterator<Item = Result<Tensor>>, spill: Option<&Path>) -> Result<Hidden> {
        let store = match spill {
            None => Store::Memory(xs.collect::<Result<_>>()?),
            Some(dir) => {
                let (path, mut w) = Spill::writer(dir)?;
                let mut s = Spill {
                    path,
                    dir: dir.to_path_buf(),
                    dims: Vec::new(),
                };
                for x in xs {
                    s.dims.push(write_window(&mut w, &s.path, &x?)?);
                }
                w.flush().map_err(|e| QuantError::io(&s.path, e))?;
                Store::Disk(s)
            }
        };
        Ok(Hidden { store })
    }

    /// Calls `f` on every window, in order.
    pub fn for_each(&self, mut f: impl FnMut(&Tensor) -> Result<()>) -> Result<()> {
        match &self.store {
            Store::Memory(xs) => xs.iter().try_for_each(f),
            Store::Disk(s) => {
                let file = File::open(&s.path).map_err(|e| QuantError::io(&s.path, e))?;
                let mut r = BufReader::with_capacity(1 << 20, file);
                let mut buf = Vec::new();
                for dims in &s.dims {
                    buf.resize(dims.iter().product::<usize>() * 4, 0);
                    r.read_exact(&mut buf).map_err(|e| QuantError::io(&s.path, e))?;
                    let v: Vec<f32> = buf
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    let x = Tensor::from_vec(v, dims.as_slice(), &Device::Cpu)
                        .map_err(|e| QuantError::tensor("hidden states", e.to_string()))?;
                    f(&x)?;
                }
                Ok(())
            }
        }
    }

    /// The windows mapped through `f` (a layer's forward pass), placed as these are.
    pub fn map(&self, mut f: impl FnMut(&Tensor) -> Result<Tensor>) -> Result<Hidden> {
        let store = match &self.store {
            Store::Memory(xs) => Store::Memory(xs.iter().map(f).collect::<Result<_>>()?),
            Store::Disk(s) => {
                let (path, mut w) = Spill::writer(&s.dir)?;
                let mut out = Spill {
                    path,
                    dir: s.dir.clone(),
                    dims: Vec::with_capacity(s.dims.len()),
                };
                self.for_each(|x| {
                    out.dims.push(write_window(&mut w, &out.path, &f(x)?)?);
                    Ok(())
                })?;
                w.flush().map_err(|e| QuantError::io(&out.path, e))?;
                Store::Disk(out)
            }
        };
        Ok(Hidden { store })
    }

    /// Whether the windows are on disk.
    #[cfg(test)]
    fn spilled(&self) -> bool {
        matches!(self.store, Store::Disk(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(n: usize) -> Vec<Tensor> {
        (0..n)
            .map(|i| {
                let v: Vec<f32> = (0..3 * 5).map(|j| (i * 100 + j) as f32 * 0.37 - 11.0).collect();
                Tensor::from_vec(v, (3, 5), &Device::Cpu).unwrap()
            })
            .collect()
    }

    fn values(h: &Hidden) -> Vec<(Vec<usize>, Vec<f32>)> {
        let mut out = Vec::new();
        h.for_each(|x| {
            out.push((x.dims().to_vec(), x.flatten_all().unwrap().to_vec1::<f32>().unwrap()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn disk_and_memory_hold_the_same_bits_and_spills_are_removed() {
        let dir = std::env::temp_dir().join(format!("llvq-hidden-test-{}", std::process::id()));
        let mem = Hidden::collect(windows(4).into_iter().map(Ok), None).unwrap();
        let disk = Hidden::collect(windows(4).into_iter().map(Ok), Some(&dir)).unwrap();
        assert!(!mem.spilled() && disk.spilled());
        assert_eq!(values(&mem), values(&disk));
        // A layer-like map, applied twice; the first spilled generation goes when replaced.
        let step = |x: &Tensor| -> Result<Tensor> { Ok((x * 1.5).unwrap().tanh().unwrap()) };
        let (mut m, mut d) = (mem, disk);
        for _ in 0..2 {
            m = m.map(step).unwrap();
            d = d.map(step).unwrap();
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        }
        assert_eq!(values(&m), values(&d));
        drop(d);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn an_error_names_the_spill_file() {
        let dir = std::env::temp_dir().join(format!("llvq-hidden-err-{}", std::process::id()));
        let d = Hidden::collect(windows(2).into_iter().map(Ok), Some(&dir)).unwrap();
        let Store::Disk(s) = &d.store else { unreachable!() };
        std::fs::write(&s.path, [0u8; 7]).unwrap(); // truncated under the store
        let e = d.for_each(|_| Ok(())).unwrap_err().to_string();
        assert!(e.contains(&*s.path.to_string_lossy()), "{e}");
        drop(d);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn auto_spills_only_above_the_limit() {
        let p = Placement::Auto;
        assert!(!p.spill(10, Some(20), Some(5)));
        assert!(p.spill(30, Some(20), Some(50)));
        assert!(p.spill(30, None, Some(20)));
        assert!(!p.spill(30, None, None));
        assert!(Placement::Disk.spill(0, None, None));
        assert!(!Placement::Memory.spill(u64::MAX, Some(1), Some(1)));
        assert_eq!("disk".parse::<Placement>(), Ok(Placement::Disk));
        assert!("ram".parse::<Placement>().unwrap_err().contains("\"ram\""));
    }
}
