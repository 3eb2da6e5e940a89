//! What every actor of one listener shares (read-only after start).

use std::sync::Arc;

use masque_proto::template::UdpTemplate;

use crate::{config::ServerConfig, handler::Handler, metrics::Metrics};

pub(crate) struct ListenerContext {
    pub config: ServerConfig,
    pub session: Arc<crate::config::SessionConfig>,
    pub handler: Arc<dyn Handler>,
    pub metrics: Arc<Metrics>,
    pub udp_template: UdpTemplate,
    pub node_name: Arc<str>,
}
