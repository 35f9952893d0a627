//! Kafka topic names: what Kafka accepts, and a resource name made into one.

/// Kafka's limit on a topic name's length.
pub const MAX_TOPIC_LEN: usize = 249;

pub(crate) fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Why Kafka would reject `topic`, if it would.
pub(crate) fn topic_problem(topic: &str) -> Option<String> {
    if topic.is_empty() {
        Some("a topic name must not be empty".to_owned())
    } else if topic == "." || topic == ".." {
        Some(format!("`{topic}` is not a valid topic name"))
    } else if topic.len() > MAX_TOPIC_LEN {
        Some(format!(
            "topic name `{topic}` is longer than Kafka's limit of {MAX_TOPIC_LEN} characters"
        ))
    } else {
        topic.chars().find(|c| !is_topic_char(*c)).map(|c| {
            format!(
                "topic name `{topic}` contains {c:?}; Kafka allows only letters, digits, `.`, \
                 `_` and `-`"
            )
        })
    }
}

/// `name` with every character Kafka rejects in a topic name replaced by `_`.
pub fn topic_name_from(name: &str) -> String {
    name.chars()
        .map(|c| if is_topic_char(c) { c } else { '_' })
        .collect()
}
