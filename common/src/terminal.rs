//! Progress bars on a terminal, for both binaries: drawn on stderr only when it is a
//! terminal (piped and container logs stay plain), with log lines written through
//! [`LogWriter`], which lifts the bars, writes the line and draws them again below it.

use std::io::Write;

use indicatif::{MultiProgress, ProgressDrawTarget};

/// Bars on stderr when `enabled` and stderr is a terminal; `None` otherwise.
pub fn terminal_bars(enabled: bool) -> Option<MultiProgress> {
    use std::io::IsTerminal;
    (enabled && std::io::stderr().is_terminal())
        .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// A `tracing` writer that keeps log lines from tearing the bars of `multi`.
#[derive(Debug, Clone)]
pub struct LogWriter {
    multi: MultiProgress,
}

impl LogWriter {
    pub fn new(multi: MultiProgress) -> Self {
        Self { multi }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine {
            multi: self.multi.clone(),
            buf: Vec::new(),
        }
    }
}

/// One log event's text, written to stderr when dropped.
pub struct LogLine {
    multi: MultiProgress,
    buf: Vec<u8>,
}

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        self.multi.suspend(|| {
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(&self.buf);
            let _ = stderr.flush();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_bars_are_none() {
        assert!(terminal_bars(false).is_none());
    }
}
