//! HTTP/3 for MASQUE on quinn: frames, QPACK (static table + literals + Huffman),
//! SETTINGS, request streams, GOAWAY and HTTP Datagrams with backpressure.
//! It knows HTTP/3, not MASQUE.
//!
//! Layering (quinn-style): `frame`, `settings`, `qpack` and `message` are sans-IO
//! codecs; `connection`, `control`, `stream` and `datagram` drive them on quinn.
#![forbid(unsafe_code)]

pub mod config;
mod connection;
mod control;
pub mod control_state;
mod datagram;
pub mod error;
pub mod error_code;
pub mod frame;
pub mod message;
pub mod qpack;

pub mod settings;
mod stats;
mod stream;

pub use config::{Config, transport_config};
pub use connection::{Connection, Side};
pub use datagram::{DatagramBuf, DatagramReceiver, DatagramSender, ReceivedDatagram};
pub use error::Error;
pub use error_code::Code;
pub use message::{RequestHead, ResponseHead};
pub use stats::{Stats, StatsSnapshot};
pub use stream::{RecvHalf, RequestStream, SendHalf};
