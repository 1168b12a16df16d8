//! Topic names as a topology holds them: the user's, or internal ones prefixed at run time.

use std::fmt;

/// A map keyed by topic name, for lookups made once per record: foldhash, and looked up by
/// `&str` so that a present topic's name is never allocated (see [`topic_entry`]).
pub(crate) type TopicMap<V> = foldhash::HashMap<String, V>;

/// `map[topic]`, inserted with its default first if missing; allocates the name only on a miss.
pub(crate) fn topic_entry<'a, V: Default>(map: &'a mut TopicMap<V>, topic: &str) -> &'a mut V {
    // A second lookup on a miss: stable Rust cannot return the `get_mut` borrow conditionally.
    if !map.contains_key(topic) {
        map.insert(topic.to_string(), V::default());
    }
    map.get_mut(topic).expect("inserted above")
}

/// A topic named in a topology: a user topic, or an internal one that gets the
/// `<application.id>-` prefix when the application runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName {
    name: String,
    internal: bool,
}

impl TopicName {
    /// A user topic, used as named.
    pub fn external(name: impl Into<String>) -> Self {
        TopicName { name: name.into(), internal: false }
    }

    /// An internal topic (repartition), prefixed with the application id at run time.
    pub fn internal(name: impl Into<String>) -> Self {
        TopicName { name: name.into(), internal: true }
    }

    /// Whether it is internal.
    pub fn is_internal(&self) -> bool {
        self.internal
    }

    /// The name as written in the topology (without prefix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name on the broker.
    pub fn resolve(&self, application_id: &str) -> String {
        if self.internal {
            format!("{application_id}-{}", self.name)
        } else {
            self.name.clone()
        }
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}
