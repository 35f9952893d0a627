//! A broker whose address is known before it runs: clients started first see nothing
//! listening there (a closed port), and [`Broker::restart`] starts it later, as a compose
//! file may start the pipeline before its broker.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::{Broker, BrokerKind, two_free_ports};

impl Broker {
    /// A broker of the kind `TEST_BROKER` names, on free ports, not started: nothing
    /// listens on [`Broker::bootstrap`] until [`Broker::restart`].
    pub fn unstarted(dir: &Path) -> Result<Self> {
        let (port, controller_port) = two_free_ports()?;
        Ok(Self {
            port,
            kind: BrokerKind::from_env()?,
            dir: dir.to_path_buf(),
            controller_port,
            // As `Broker::start_kind`: tests may shorten the session timeout.
            extra: vec!["group.min.session.timeout.ms=1000".to_owned()],
            proc: None,
            started_in: Duration::ZERO,
        })
    }
}
