//! What a viewer tells us about the packets we sent it, in plain types (the media layer
//! translates GStreamer's structures into these).

use std::time::Duration;

/// One packet's fate, from transport-wide congestion control feedback (TWCC): when we sent
/// it and when the viewer got it, each on its own clock (only differences matter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketReport {
    /// The transport-wide sequence number, as the feedback numbers it.
    pub seq: u32,
    /// Our send time (the pipeline clock).
    pub sent: Duration,
    /// The viewer's receive time; `None`: reported lost.
    pub arrived: Option<Duration>,
    /// Bytes on the wire (RTP payload and headers).
    pub size: u32,
}

/// A viewer's RTCP receiver report (every viewer sends these, with or without TWCC).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReceiverReport {
    /// The fraction of packets lost since the previous report, 0.0 to 1.0.
    pub fraction_lost: f64,
    pub round_trip: Option<Duration>,
    /// Packets lost since the stream began, as reported: the same report read twice has the
    /// same numbers, so it is counted once.
    pub lost_total: i64,
}
