//! HTTP/3 for MASQUE on quinn: frames, QPACK (static table + literals + Huffman),
//! SETTINGS, request streams, GOAWAY and HTTP Datagrams with backpressure.
//! It knows HTTP/3, not MASQUE.
#![forbid(unsafe_code)]

pub mod message;
pub mod qpack;
