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

#[cfg(test)]
mod tests {
    use super::MetricsConfig;

    fn check(listen: Option<&str>) -> Result<Option<std::net::SocketAddr>, String> {
        MetricsConfig {
            listen: listen.map(String::from),
        }
        .listen_addr()
        .map_err(|e| e.to_string())
    }

    #[test]
    fn listen_is_checked_and_named() {
        assert_eq!(check(None), Ok(None));
        assert_eq!(
            check(Some("127.0.0.1:9588")),
            Ok(Some("127.0.0.1:9588".parse().unwrap()))
        );
        assert!(check(Some("[::1]:9588")).unwrap().is_some());
        for bad in [
            "localhost:9588",
            "127.0.0.1",
            "127.0.0.1:0",
            "224.0.0.1:9588",
            "",
            ":9588",
        ] {
            let e = check(Some(bad)).unwrap_err();
            assert!(e.starts_with("metrics.listen: "), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e =
            toml::from_str::<MetricsConfig>("listen = \"127.0.0.1:1\"\nport = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
