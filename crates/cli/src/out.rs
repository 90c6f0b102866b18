//! Standard output for every command. `println!` panics when stdout is closed (`llvq … | head`)
//! or full (`> /dev/full`); these helpers return the error instead, so `main` can end a closed
//! pipe quietly with exit 0 (as ripgrep does) and report any other write error with exit 1.
use std::io::{self, Write};

use anyhow::{Context, Result};

/// Writes formatted text to stdout (use through [`outln!`] and [`out!`]).
pub fn print(args: std::fmt::Arguments<'_>) -> Result<()> {
    io::stdout().lock().write_fmt(args).context("writing to stdout")
}

/// Writes raw bytes to stdout.
pub fn bytes(b: &[u8]) -> Result<()> {
    io::stdout().lock().write_all(b).context("writing to stdout")
}

/// Flushes stdout: a write error the line buffer still holds surfaces here, not at exit,
/// where Rust would drop it silently.
pub fn flush() -> Result<()> {
    io::stdout().lock().flush().context("writing to stdout")
}

/// Whether `e` is (caused by) a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|io| io.kind() == io::ErrorKind::BrokenPipe)
}

/// `println!` that returns `anyhow::Result<()>` instead of panicking.
macro_rules! outln {
    () => {
        $crate::out::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that returns `anyhow::Result<()>` instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::print(format_args!($($arg)*))
    };
}
