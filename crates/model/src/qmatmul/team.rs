//! A spinning team of threads for the runtime's parallel loops: the products of generation,
//! the prefill tiles and the online rotations.
//!
//! Generation runs ~150 matrix-vector products per token on the default model, each a few tens
//! of microseconds of work. Split with rayon, every product woke a sleeping worker through the
//! kernel (a futex; slow on a virtual machine), and the sequential code between products
//! (norms, attention, rotations) was long enough for it to fall asleep again: measured on the
//! 2-core machine, 2 threads generated only 1.25× the tokens/s of 1 thread. As ggml's thread
//! pool does, the team's helpers instead spin on a counter between loops, yield the core after
//! [`SPIN_HOT`] (so rayon's workers, which run candle's element-wise ops between our loops, get
//! it) and sleep after [`SPIN`] without work, so a loop starts on every thread at once.
//!
//! [`chunks_mut`] and [`for_each`] are the entry points. The calling thread works too; tasks
//! are claimed from a shared counter, so a late helper only takes fewer of them. One loop runs
//! at a time: a second caller (another thread, or a task calling in) falls back to rayon.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rayon::prelude::*;

/// How long a helper spins without work before it sleeps.
const SPIN: Duration = Duration::from_millis(2);
/// How long of that it spins without yielding the core.
const SPIN_HOT: Duration = Duration::from_micros(50);

/// The task function of the current product, `'static` only in name: the caller keeps it
/// alive until every helper has left it (see [`Shared::in_job`]).
type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Incremented to publish a product.
    epoch: AtomicU64,
    /// Written by the caller only while no helper can read it (before `epoch` moves).
    job: UnsafeCell<Option<Job>>,
    tasks: AtomicUsize,
    next: AtomicUsize,
    done: AtomicUsize,
    /// Set once every task is done: a helper arriving after it must not touch `job`.
    closed: AtomicBool,
    /// Helpers inside the current product; the caller returns only when it is 0 and `closed`.
    in_job: AtomicUsize,
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the caller holding `Team::busy`, while `closed` is set and
// `in_job` is 0, and read by helpers only between an increment of `in_job` that saw `closed`
// unset with an unchanged epoch and the matching decrement (the SeqCst protocol above).
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

struct Team {
    busy: Mutex<()>,
    shared: Arc<Shared>,
    helpers: usize,
}

/// The team, started on first use with one helper fewer than rayon's global thread count.
fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        let threads = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            tasks: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            closed: AtomicBool::new(true),
            in_job: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut helpers = 0;
        for i in 1..threads {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("llvq-team-{i}"))
                .spawn(move || helper(&s));
            helpers += spawned.is_ok() as usize;
        }
        Team {
            busy: Mutex::new(()),
            shared,
            helpers,
        }
    })
}

/// Claims and runs tasks until none is left.
fn work(s: &Shared, job: &(dyn Fn(usize) + Sync)) {
    let n = s.tasks.load(Relaxed);
    loop {
        let i = s.next.fetch_add(1, Relaxed);
        if i >= n {
            return;
        }
        if catch_unwind(AssertUnwindSafe(|| job(i))).is_err() {
            s.panicked.store(true, Relaxed);
        }
        s.done.fetch_add(1, Release);
    }
}

fn helper(s: &Shared) {
    let mut seen = 0u64;
    loop {
        let t0 = Instant::now();
        let (mut spins, mut yielding) = (0u32, false);
        let e = loop {
            let e = s.epoch.load(Acquire);
            if e != seen {
                break e;
            }
            spins = spins.wrapping_add(1);
            if yielding {
                // Other threads (rayon's, between products) get the core first.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
            if spins % 64 != 0 {
                continue;
            }
            let waited = t0.elapsed();
            yielding |= waited > SPIN_HOT;
            if waited > SPIN {
                s.sleepers.fetch_add(1, SeqCst);
                let mut g = s.sleep.lock().unwrap_or_else(|p| p.into_inner());
                while s.epoch.load(SeqCst) == seen {
                    g = s.wake.wait(g).unwrap_or_else(|p| p.into_inner());
                }
                drop(g);
                s.sleepers.fetch_sub(1, SeqCst);
            }
        };
        seen = e;
        s.in_job.fetch_add(1, SeqCst);
        if !s.closed.load(SeqCst) && s.epoch.load(SeqCst) == e {
            // SAFETY: `closed` unset with the epoch unchanged after `in_job` was raised: the
            // caller has published this product's job and waits for `in_job` before it ends.
            if let Some(job) = unsafe { *s.job.get() } {
                work(s, unsafe { &*job });
            }
        }
        s.in_job.fetch_sub(1, SeqCst);
    }
}

/// Runs `f(t, chunk)` for the chunks of `per` values of `y` (chunk t starts at `t·per`), on the
/// team when it is free, on rayon otherwise.
pub(crate) fn chunks_mut<T: Send>(y: &mut [T], per: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let per = per.max(1);
    let (ptr, len) = (y.as_mut_ptr() as usize, y.len());
    for_each_or(
        len.div_ceil(per),
        |t| {
            let start = t * per;
            let end = (start + per).min(len);
            // SAFETY: task t is run once and owns y[start..end]; the chunks are disjoint and
            // `y` outlives the call (every task ends before `for_each_or` returns).
            let chunk = unsafe { std::slice::from_raw_parts_mut((ptr as *mut T).add(start), end - start) };
            f(t, chunk);
        },
        || y.par_chunks_mut(per).enumerate().for_each(|(t, c)| f(t, c)),
    );
}

/// Runs `f(i)` for i in 0..n, on the team when it is free, on rayon otherwise.
pub(crate) fn for_each(n: usize, f: impl Fn(usize) + Sync) {
    for_each_or(n, &f, || (0..n).into_par_iter().for_each(&f));
}

/// `task(i)` for i in 0..n on the team, or `fallback()` when the team is busy or absent.
fn for_each_or(n: usize, task: impl Fn(usize) + Sync, fallback: impl FnOnce()) {
    if n <= 1 || rayon::current_num_threads() <= 1 {
        // One thread: no hand-off to rayon's worker (a wake-up per loop).
        return (0..n).for_each(task);
    }
    let team = team();
    let guard = if team.helpers > 0 {
        match team.busy.try_lock() {
            Ok(g) => Some(g),
            // A task's panic poisoned it; the protocol's state was left consistent.
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    } else {
        None
    };
    let Some(_guard) = guard else {
        return fallback();
    };
    let job: &(dyn Fn(usize) + Sync) = &task;
    let s = &*team.shared;
    // SAFETY: `closed` is set and `in_job` is 0 (the previous product ended), so no helper
    // reads `job` now; the lifetime is erased only for the duration of this call.
    unsafe { *s.job.get() = Some(std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(job)) };
    s.tasks.store(n, Relaxed);
    s.next.store(0, Relaxed);
    s.done.store(0, Relaxed);
    s.panicked.store(false, Relaxed);
    s.closed.store(false, SeqCst);
    s.epoch.fetch_add(1, SeqCst);
    if s.sleepers.load(SeqCst) > 0 {
        let _g = s.sleep.lock().unwrap_or_else(|p| p.into_inner());
        s.wake.notify_all();
    }
    work(s, job);
    while s.done.load(Acquire) < n {
        std::hint::spin_loop();
    }
    s.closed.store(true, SeqCst);
    while s.in_job.load(SeqCst) > 0 {
        std::hint::spin_loop();
    }
    if s.panicked.load(Relaxed) {
        panic!("a task of a matrix product panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk is visited once, with its own index, from one caller or many at once (the
    /// team for one of them, rayon for the rest), and from inside a task.
    #[test]
    fn every_chunk_is_written_once_by_its_task() {
        let check = |len: usize, per: usize| {
            let mut y = vec![-1f32; len];
            chunks_mut(&mut y, per, |t, c| {
                for (i, v) in c.iter_mut().enumerate() {
                    assert_eq!(*v, -1.0);
                    *v = (t * per + i) as f32;
                }
            });
            assert!(y.iter().enumerate().all(|(i, &v)| v == i as f32), "len {len} per {per}");
        };
        for (len, per) in [(1, 1), (7, 3), (100, 1), (1000, 64), (1000, 1000), (1001, 7)] {
            check(len, per);
        }
        std::thread::scope(|sc| {
            for k in 0..4 {
                sc.spawn(move || {
                    for r in 0..200 {
                        check(50 + 13 * k + r % 7, 1 + r % 5);
                    }
                });
            }
        });
        let mut outer = vec![0f32; 8];
        chunks_mut(&mut outer, 1, |_, c| {
            let mut inner = vec![0f32; 16];
            chunks_mut(&mut inner, 3, |t, c| c.fill(t as f32));
            c[0] = inner.iter().sum();
        });
        let want: f32 = (0..16).map(|i| (i / 3) as f32).sum();
        assert!(outer.iter().all(|&v| v == want));
    }

    #[test]
    fn a_panicking_task_panics_the_caller() {
        let r = std::panic::catch_unwind(|| {
            let mut y = vec![0f32; 64];
            chunks_mut(&mut y, 1, |t, _| assert!(t != 17, "task 17"));
        });
        assert!(r.is_err());
        // The team still works afterwards.
        let mut y = vec![0f32; 64];
        chunks_mut(&mut y, 4, |t, c| c.fill(t as f32));
        assert!(y.iter().enumerate().all(|(i, &v)| v == (i / 4) as f32));
    }
}
