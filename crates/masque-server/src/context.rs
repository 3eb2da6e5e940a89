//! What every actor of one listener shares (read-only after start).

use std::sync::Arc;

use masque_proto::{
    request::Templates,
    template::{IpTemplate, TcpTemplate, TemplateError, UdpTemplate},
};

use crate::{admission::Admission, config::ServerConfig, handler::Handler, metrics::Metrics};

pub(crate) struct ListenerContext {
    pub config: ServerConfig,
    pub session: Arc<crate::config::SessionConfig>,
    pub handler: Arc<dyn Handler>,
    pub metrics: Arc<Metrics>,
    /// Node-wide admission (every listener of the node shares this context).
    pub admission: Arc<Admission>,
    /// The URI templates requests are classified against.
    pub templates: Templates,
    pub node_name: Arc<str>,
}

impl ListenerContext {
    /// Parses the configured templates; the one place that builds a context.
    pub fn new(
        config: ServerConfig,
        handler: Arc<dyn Handler>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TemplateError> {
        let templates = Templates {
            udp: UdpTemplate::parse_path(&config.udp_template)?,
            ip: IpTemplate::well_known(),
            tcp: TcpTemplate::well_known(),
        };
        Ok(Self {
            admission: Admission::new(config.admission, Arc::clone(&metrics)),
            session: Arc::new(config.session.clone()),
            node_name: config.node_name.as_str().into(),
            handler,
            metrics,
            templates,
            config,
        })
    }
}
