//! The `apache/kafka` image's reading of the `kafka` service: its `KAFKA_*` variables as
//! `server.properties` lines, and the check that a local broker runs exactly those settings
//! with the addresses and the data directory rewritten.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, ensure};

/// Settings the harness writes itself (127.0.0.1, free ports, the test directory);
/// everything else is passed as the file has it.
pub const REWRITTEN: [&str; 4] = [
    "listeners",
    "advertised.listeners",
    "controller.quorum.voters",
    "log.dirs",
];

/// The `server.properties` settings the image renders from the service's environment.
pub fn image_settings(environment: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    environment
        .iter()
        .filter_map(|(k, v)| Some((image_property(k)?, v.clone())))
        .collect()
}

/// The `key=value` lines for the local broker: the file's settings but [`REWRITTEN`].
pub fn passed_settings(compose: &BTreeMap<String, String>) -> Vec<String> {
    compose
        .iter()
        .filter(|(k, _)| !REWRITTEN.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// `key`'s value in a set of settings.
pub fn setting(map: &BTreeMap<String, String>, key: &str) -> Result<String> {
    map.get(key)
        .cloned()
        .with_context(|| format!("kafka: no {key}"))
}

/// Checks the broker's `effective` settings against the file's (`compose`): the
/// [`REWRITTEN`] ones are the file's mapped to the broker's listeners and `data_dir`, the
/// others are as written, and the broker adds only the image's inter-broker listener (the
/// same value) and the harness' short session minimum. Returns the broker's port for each
/// listener name. `data_dir` is where the broker keeps its data (its `log.dirs`).
pub fn check_effective(
    compose: &BTreeMap<String, String>,
    effective: &BTreeMap<String, String>,
    data_dir: &Path,
) -> Result<BTreeMap<String, u16>> {
    // The mapping: each listener's container port → its local port, by listener name.
    let theirs = listener_ports(&setting(compose, "listeners")?)?;
    let ours = listener_ports(&setting(effective, "listeners")?)?;
    ensure!(
        theirs.keys().eq(ours.keys()),
        "listener names: file {theirs:?}, broker {ours:?}"
    );
    // Entry by entry (`NAME://host:port`, `id@host:port`): the host becomes 127.0.0.1
    // and the port the local port of the listener the file gives that port.
    let by_port: BTreeMap<u16, u16> = theirs
        .iter()
        .map(|(name, port)| (*port, ours[name]))
        .collect();
    let map = |value: &str| -> Result<String> {
        value
            .split(',')
            .map(|entry| {
                let (head, port) = entry.rsplit_once(':').context("host:port")?;
                let local = by_port
                    .get(&port.parse()?)
                    .with_context(|| format!("no listener on {entry}"))?;
                let at = head.rfind(['/', '@']).map_or(0, |i| i + 1);
                Ok(format!("{}127.0.0.1:{local}", &head[..at]))
            })
            .collect::<Result<Vec<_>>>()
            .map(|entries| entries.join(","))
    };
    for key in REWRITTEN {
        let want = match key {
            "log.dirs" => data_dir.display().to_string(),
            _ => map(&setting(compose, key)?)?,
        };
        let have = setting(effective, key)?;
        ensure!(
            have == want,
            "kafka {key}: the file's {:?} maps to {want:?}, the broker has {have:?}",
            compose[key]
        );
    }
    for (key, value) in compose
        .iter()
        .filter(|(k, _)| !REWRITTEN.contains(&k.as_str()))
    {
        ensure!(
            effective.get(key) == Some(value),
            "kafka {key}: the file has {value:?}, the broker {:?}",
            effective.get(key)
        );
    }
    // What the broker runs with that the file does not set: the image's default for the
    // inter-broker listener (the same value) and the harness' short session minimum.
    let added: BTreeSet<&str> = effective
        .keys()
        .filter(|k| !compose.contains_key(*k))
        .map(String::as_str)
        .collect();
    ensure!(
        added == BTreeSet::from(["group.min.session.timeout.ms", "inter.broker.listener.name"]),
        "the broker runs settings the compose file does not have: {added:?}"
    );
    ensure!(effective["inter.broker.listener.name"] == "PLAINTEXT");
    Ok(ours)
}

/// The `server.properties` name the `apache/kafka` image gives an environment variable:
/// `KAFKA_` dropped, lowercased, `_` → `.`, `__` → `_`, `___` → `-`; `None` for variables
/// the image keeps for itself (JVM and log4j options).
pub fn image_property(env_key: &str) -> Option<String> {
    const KEPT: [&str; 10] = [
        "KAFKA_VERSION",
        "KAFKA_HEAP_OPT",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_LOG4J_ROOT_LOGLEVEL",
        "KAFKA_LOG4J_LOGGERS",
        "KAFKA_TOOLS_LOG4J_LOGLEVEL",
    ];
    let rest = env_key.strip_prefix("KAFKA_")?;
    if KEPT.contains(&env_key) || rest.is_empty() {
        return None;
    }
    let mut out = String::new();
    let mut underscores = 0;
    for c in rest.chars().chain(std::iter::once('\0')) {
        if c == '_' {
            underscores += 1;
            continue;
        }
        match underscores {
            0 => {}
            1 => out.push('.'),
            2 => out.push('_'),
            _ => out.push('-'),
        }
        underscores = 0;
        if c != '\0' {
            out.push(c.to_ascii_lowercase());
        }
    }
    Some(out)
}

/// A `.properties` file: the last value of each key wins, as in Java.
pub fn properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// `NAME://host:port` entries of a listener list, by name.
pub fn listener_ports(list: &str) -> Result<BTreeMap<String, u16>> {
    list.split(',')
        .map(|l| {
            let (name, addr) = l.split_once("://").with_context(|| format!("{l:?}"))?;
            let port = addr.rsplit(':').next().context("port")?.parse()?;
            Ok((name.to_owned(), port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_variables_map_like_the_image() {
        for (var, property) in [
            ("KAFKA_NODE_ID", Some("node.id")),
            (
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
                Some("transaction.state.log.min.isr"),
            ),
            ("KAFKA_LISTENER_NAME_X__Y", Some("listener.name.x_y")),
            ("KAFKA_A___B_C", Some("a-b.c")),
            ("KAFKA_HEAP_OPT", None),
            ("OTHER_NODE_ID", None),
        ] {
            assert_eq!(image_property(var).as_deref(), property, "{var}");
        }
    }
}
