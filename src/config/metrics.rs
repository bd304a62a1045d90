//! `[metrics]`: where the Prometheus endpoint listens (off when absent).
//!
//! The endpoint shows peers, ports and table sizes to whoever can reach
//! it, so the key takes an explicit address: a loopback one by habit
//! (`127.0.0.1:9588`, 9588 being free in Prometheus' port list), a
//! management address when a remote Prometheus scrapes it.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{err, ConfigError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// `IP:port` of the HTTP endpoint serving `/metrics`; absent: none.
    pub listen: Option<String>,
}

impl MetricsConfig {
    /// The address to bind, None when metrics are off. Numeric only (no
    /// DNS in the daemon); port 0 is refused, as a scraper needs to know it.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(s) = &self.listen else {
            return Ok(None);
        };
        let sa: SocketAddr = s.parse().map_err(|_| {
            err(
                "metrics.listen",
                format!("'{s}' is not IP:port (IPv6 as [addr]:port)"),
            )
        })?;
        if sa.port() == 0 {
            return Err(err("metrics.listen", "port must not be 0"));
        }
        if sa.ip().is_multicast() {
            return Err(err(
                "metrics.listen",
                format!("'{s}' is a multicast address"),
            ));
        }
        Ok(Some(sa))
    }
}
