//! Limits and knobs of the HTTP/3 layer. Every limit has a sane default.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// SETTINGS_MAX_FIELD_SECTION_SIZE we advertise and enforce on received header
    /// sections (RFC 9114 §4.2.2).
    pub max_field_section_size: u64,
    /// Per-request-stream queue of received HTTP datagrams; when full, new datagrams
    /// are dropped and counted (`Stats::datagrams_dropped_queue_full`).
    pub datagram_queue_capacity: usize,
    /// Requests parsed but not yet taken by `Connection::accept` (server).
    pub accept_queue_capacity: usize,
    /// How long a peer may take to send a request's header section (server).
    pub request_header_timeout: Duration,
    /// How long a client waits for the server's SETTINGS before an extended CONNECT.
    pub settings_timeout: Duration,
    /// Send a GREASE setting and a GREASE frame on the control stream (RFC 9114 §7.2.8,
    /// §7.2.4.1) so peers keep tolerating unknown values.
    pub send_grease: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_field_section_size: 16 * 1024,
            datagram_queue_capacity: 1024,
            accept_queue_capacity: 256,
            request_header_timeout: Duration::from_secs(10),
            settings_timeout: Duration::from_secs(5),
            send_grease: true,
        }
    }
}

/// A quinn transport configuration suited to MASQUE: enough concurrent request
/// streams for `max_streams` tunnels (see [`request_stream_window`]), datagrams
/// enabled with buffers sized for tunnel traffic, and keep-alives so idle
/// tunnels survive NAT timeouts.
pub fn transport_config(max_streams: u32) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(request_stream_window(max_streams).into())
        // Control stream, QPACK encoder/decoder streams, plus room for GREASE.
        .max_concurrent_uni_streams(16u32.into())
        .datagram_receive_buffer_size(Some(4 * 1024 * 1024))
        .datagram_send_buffer_size(4 * 1024 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(15)));
    t
}

/// The QUIC bidirectional stream window that lets a peer keep `requests`
/// request streams open at all times.
///
/// quinn returns stream credit (MAX_STREAMS) only once more than 1/8 of the
/// window has been freed since the last announcement, so right after a peer
/// closed everything up to 1/8 of the window can still be withheld. A window
/// of `requests * 8 / 7` (rounded up) leaves room for that, so a peer that
/// closed all its tunnels can reopen all of them at once.
pub fn request_stream_window(requests: u32) -> u32 {
    let requests = u64::from(requests);
    let window = requests + requests.div_ceil(7);
    u32::try_from(window).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The withheld eighth never cuts below the requested count.
    #[test]
    fn window_leaves_room_for_withheld_credit() {
        for requests in [0u32, 1, 7, 8, 100, 116, 5016, 1 << 20] {
            let w = request_stream_window(requests);
            let withheld = w / 8;
            assert!(w - withheld >= requests, "{requests} -> {w}");
        }
        assert_eq!(request_stream_window(u32::MAX), u32::MAX);
    }
}
