//! What is wrong with a config: a [`Problem`] (a key path and a message) and the
//! [`ConfigError`] that `load` and `parse` return, plus the list validation collects them in.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with the config, at a key path like `resources[0].primary_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() || self.path == "." {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "config file {}: unknown format, expected a .toml, .json, .yaml or .yml file",
        path.display()
    )]
    UnknownFormat { path: PathBuf },
    /// Not the shape of a config: syntax, unknown key, wrong type, missing key.
    #[error("{origin}: {problem}")]
    Parse { origin: String, problem: Problem },
    /// The right shape but wrong values.
    #[error("{origin}: {}", list_problems(problems))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// Every problem found, each with its key path.
    pub fn problems(&self) -> Vec<&Problem> {
        match self {
            ConfigError::Parse { problem, .. } => vec![problem],
            ConfigError::Invalid { problems, .. } => problems.iter().collect(),
            ConfigError::Read { .. } | ConfigError::UnknownFormat { .. } => Vec::new(),
        }
    }
}

fn list_problems(problems: &[Problem]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let all: Vec<String> = many.iter().map(Problem::to_string).collect();
            format!("{} problems: {}", many.len(), all.join("; "))
        }
    }
}

/// The problems found so far, in the order found.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}
