//! Instance metadata: which application instance hosts which tasks, stores and partitions.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::error::StreamsError;

/// An instance's `application.server` endpoint (Kafka Streams' `HostInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostInfo {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl HostInfo {
    /// `host:port`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        HostInfo { host: host.into(), port }
    }
}

impl fmt::Display for HostInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl FromStr for HostInfo {
    type Err = StreamsError;

    /// Parses `host:port` (an IPv6 host in brackets: `[::1]:8080`).
    fn from_str(s: &str) -> Result<Self, StreamsError> {
        let invalid = |why: &str| StreamsError::Config {
            key: crate::StreamsConfig::APPLICATION_SERVER.into(),
            message: format!("`{s}` is not host:port ({why})"),
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| invalid("no port"))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = port.parse().map_err(|_| invalid("bad port"))?;
        Ok(HostInfo { host: host.to_string(), port })
    }
}

/// Where to query a key (Kafka Streams' `KeyQueryMetadata`): the instance with the active
/// task of the key's partition, and the instances with standbys of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyQueryMetadata {
    /// The instance whose task of `partition` is active.
    pub active_host: HostInfo,
    /// Instances keeping a standby of the task.
    pub standby_hosts: Vec<HostInfo>,
    /// The key's partition.
    pub partition: i32,
}

/// One instance of the application (Kafka Streams' `StreamsMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsMetadata {
    /// Its `application.server`.
    pub host_info: HostInfo,
    /// Its process id (stable across restarts: it lives in the instance's state directory).
    pub process_id: String,
    /// Stores of its active tasks.
    pub state_store_names: BTreeSet<String>,
    /// Input partitions of its active tasks.
    pub topic_partitions: BTreeSet<(String, i32)>,
    /// Stores of its standby tasks.
    pub standby_state_store_names: BTreeSet<String>,
    /// Input partitions of its standby tasks.
    pub standby_topic_partitions: BTreeSet<(String, i32)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_info_parses_host_and_port() {
        assert_eq!("localhost:8080".parse::<HostInfo>().unwrap(), HostInfo::new("localhost", 8080));
        assert_eq!("[::1]:9".parse::<HostInfo>().unwrap(), HostInfo::new("::1", 9));
        assert_eq!(HostInfo::new("h", 1).to_string(), "h:1");
        assert!("localhost".parse::<HostInfo>().is_err());
        assert!(":80".parse::<HostInfo>().is_err());
        assert!("h:99999".parse::<HostInfo>().is_err());
    }
}
