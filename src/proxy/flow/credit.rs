//! Credit, one direction of one stream at a time (`docs/proxy.md`, "Flow control"): what the
//! peer still lets this end send (`Window`), and what this end holds and owes back as credit
//! (`Inbound`). Pure; the stream table (`flow`) keeps one of each per stream.

use super::super::frame::MAX_DATA;

/// Credit the browser (opener) holds per stream when it opens: what it may send the device
/// (request bodies, WebSocket messages toward the upstream) before the device returns any.
/// Not negotiated. This is what the device may have to buffer per stream, so it stays small:
/// 64 streams x 256 KiB = 16 MiB bound the device's inbound buffering
/// (`media::datachannels::INBOUND_BYTES`), and 256 KiB still keeps a 10 Mbit/s, 100 ms path
/// busy on one upload.
pub const OPENER_WINDOW: u32 = 256 * 1024;
/// Credit the device (acceptor) holds per stream when it opens: what it may send the browser
/// (responses, WebSocket messages toward the page). One stream is credit-bound at
/// window / credit round trip: with 256 KiB a bulk download reached 17-20 MB/s of a ~31 MB/s
/// raw datachannel ceiling on loopback, with 1 MiB 27 MB/s (`docs/benchmarks.md`, "Web-UI
/// proxy"). The browser buffers what it does not yet read, at most this per stream; the
/// device's own buffering of responses is capped per session by `bridge::RESPONSE_BUDGET`,
/// not by this window.
pub const ACCEPTOR_WINDOW: u32 = 1024 * 1024;

// The receiver returns credit once half its window is consumed, so a sender that waits for
// room for a whole frame is always freed: half a window holds the largest frame. Per direction.
const _: () = assert!(OPENER_WINDOW as usize / 2 >= MAX_DATA);
const _: () = assert!(ACCEPTOR_WINDOW as usize / 2 >= MAX_DATA);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("peer sent {n} flow-controlled bytes with {available} of credit")]
    WindowExceeded { n: u32, available: u32 },
    #[error("credit of {n} would raise the window from {available} over its size {window}")]
    CreditOverflow { n: u32, available: u32, window: u32 },
    #[error("{n} bytes to send with {available} of credit")]
    NoCredit { n: u32, available: u32 },
}

/// The sending side of one direction: what the peer still lets us send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    size: u32,
    available: u32,
}

impl Window {
    pub fn new(initial: u32) -> Self {
        Self {
            size: initial,
            available: initial,
        }
    }

    pub fn available(&self) -> u32 {
        self.available
    }

    pub fn can_send(&self, n: u32) -> bool {
        n <= self.available
    }

    pub fn consume_send(&mut self, n: u32) -> Result<(), FlowError> {
        if !self.can_send(n) {
            return Err(FlowError::NoCredit {
                n,
                available: self.available,
            });
        }
        self.available -= n;
        Ok(())
    }

    /// A received `Credit`. The peer only returns what we sent, so credit beyond the initial
    /// window is a protocol violation (this also rules out u32 overflow).
    pub fn grant(&mut self, n: u32) -> Result<(), FlowError> {
        match self.available.checked_add(n) {
            Some(a) if a <= self.size => {
                self.available = a;
                Ok(())
            }
            _ => Err(FlowError::CreditOverflow {
                n,
                available: self.available,
                window: self.size,
            }),
        }
    }
}

/// The receiving side of one direction: bytes the peer sent that we hold, and bytes we
/// consumed but have not yet returned as credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inbound {
    window: u32,
    buffered: u32,
    unreturned: u32,
}

impl Inbound {
    pub fn new(window: u32) -> Self {
        Self {
            window,
            buffered: 0,
            unreturned: 0,
        }
    }

    /// Bytes the peer may still send before it needs more credit.
    pub fn available(&self) -> u32 {
        self.window - self.buffered - self.unreturned
    }

    /// Received but not yet consumed.
    pub fn buffered(&self) -> u32 {
        self.buffered
    }

    /// A flow-controlled frame arrived. Over the window: the peer ignored its credit.
    pub fn received(&mut self, n: u32) -> Result<(), FlowError> {
        let available = self.available();
        if n > available {
            return Err(FlowError::WindowExceeded { n, available });
        }
        self.buffered += n;
        Ok(())
    }

    /// `n` buffered bytes were handed on (written upstream, queued for the page, appended to
    /// a message being reassembled). Returns the credit to send, nonzero, once at least half
    /// this direction's window is waiting to be returned: one credit per half window (128 KiB
    /// toward the device, 512 KiB toward the browser), not per chunk.
    pub fn consumed(&mut self, n: u32) -> Option<u32> {
        debug_assert!(
            n <= self.buffered,
            "consumed {n} of {} buffered",
            self.buffered
        );
        let n = n.min(self.buffered);
        self.buffered -= n;
        self.unreturned += n;
        if self.unreturned == 0 || self.unreturned < (self.window / 2).max(1) {
            return None;
        }
        Some(std::mem::take(&mut self.unreturned))
    }
}
