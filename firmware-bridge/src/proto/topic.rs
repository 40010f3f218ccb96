//! Topic names of the floor protocol: `wms/{site}/{class}/{id}/{channel}`.
//!
//! Both the node and the bridge build and parse topics here, so a typo cannot split the floor in
//! two. Site and device ids are restricted to `[A-Za-z0-9._-]`, 1–64 bytes: no `/`, no MQTT
//! wildcards, nothing a broker ACL or a shell would treat specially.
//!
//! Parsing never allocates; building a `String` needs `alloc`, and [`Topic`] implements
//! `Display` for formatting into any buffer.

use core::fmt;

use super::{Channel, DeviceClass};

/// The first topic segment of the floor protocol.
pub const ROOT: &str = "wms";

/// Longest site or device id, in bytes.
pub const MAX_SEGMENT_LEN: usize = 64;

/// A floor topic, borrowed or owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Topic<S> {
    /// The warehouse site.
    pub site: S,
    /// Scanner, printer or gateway.
    pub class: DeviceClass,
    /// The device id (unique within its class on the site).
    pub id: S,
    /// What flows on the topic.
    pub channel: Channel,
}

/// Why a topic string or segment is not a floor topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic does not have the five segments `wms/site/class/id/channel`.
    #[error("topic does not have the form wms/{{site}}/{{class}}/{{id}}/{{channel}}")]
    Shape,
    /// The class segment is not scanner, printer or gateway.
    #[error("topic class is not scanner, printer or gateway")]
    Class,
    /// The channel segment is not evt, cmd, reply, state or alert.
    #[error("topic channel is not evt, cmd, reply, state or alert")]
    Channel,
    /// A site or id segment is empty.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// A site or id segment is longer than [`MAX_SEGMENT_LEN`].
    #[error("{0} is longer than 64 bytes")]
    TooLong(&'static str),
    /// A site or id segment holds a character outside `[A-Za-z0-9._-]`.
    #[error("{0} may only contain A-Z, a-z, 0-9, '.', '_' and '-'")]
    Character(&'static str),
}

/// Checks a site or device id; `what` names it in the error (`"site"`, `"device id"`).
pub fn check_segment(what: &'static str, s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty(what));
    }
    if s.len() > MAX_SEGMENT_LEN {
        return Err(TopicError::TooLong(what));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(TopicError::Character(what));
    }
    Ok(())
}

impl<'a> Topic<&'a str> {
    /// Parses a topic received from the broker.
    pub fn parse(topic: &'a str) -> Result<Self, TopicError> {
        let mut parts = topic.split('/');
        let (Some(root), Some(site), Some(class), Some(id), Some(channel), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TopicError::Shape);
        };
        if root != ROOT {
            return Err(TopicError::Shape);
        }
        check_segment("site", site)?;
        check_segment("device id", id)?;
        let class = DeviceClass::from_name(class).ok_or(TopicError::Class)?;
        let channel = Channel::from_name(channel).ok_or(TopicError::Channel)?;
        Ok(Topic {
            site,
            class,
            id,
            channel,
        })
    }
}

impl<S: AsRef<str>> Topic<S> {
    /// A topic whose site and id are checked.
    pub fn new(site: S, class: DeviceClass, id: S, channel: Channel) -> Result<Self, TopicError> {
        check_segment("site", site.as_ref())?;
        check_segment("device id", id.as_ref())?;
        Ok(Topic {
            site,
            class,
            id,
            channel,
        })
    }

    /// The same device on another channel.
    pub fn with_channel(self, channel: Channel) -> Self {
        Topic { channel, ..self }
    }

    /// The topic as a `String`.
    #[cfg(feature = "alloc")]
    pub fn to_topic_string(&self) -> alloc::string::String {
        alloc::format!("{self}")
    }
}

impl<S: AsRef<str>> fmt::Display for Topic<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ROOT}/{}/{}/{}/{}",
            self.site.as_ref(),
            self.class,
            self.id.as_ref(),
            self.channel
        )
    }
}

/// A subscription filter for one channel of every device of a site, optionally of one class:
/// `wms/{site}/+/+/evt` or `wms/{site}/scanner/+/evt`. The node subscribes with these.
#[cfg(feature = "alloc")]
pub fn filter(site: &str, class: Option<DeviceClass>, channel: Channel) -> alloc::string::String {
    match class {
        Some(class) => alloc::format!("{ROOT}/{site}/{class}/+/{channel}"),
        None => alloc::format!("{ROOT}/{site}/+/+/{channel}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn a_topic_formats_and_parses_back() {
        let t = Topic::new("sh01", DeviceClass::Scanner, "sc-7", Channel::Evt).unwrap();
        let s = t.to_string();
        assert_eq!(s, "wms/sh01/scanner/sc-7/evt");
        assert_eq!(Topic::parse(&s).unwrap(), t);
    }

    /// Issue 14: the node's alerts go to `wms/{site}/gateway/{id}/alert`.
    #[test]
    fn the_gateway_alert_topic_formats_and_parses_back() {
        let t = Topic::new("sh01", DeviceClass::Gateway, "gw-1", Channel::Alert).unwrap();
        let s = t.to_string();
        assert_eq!(s, "wms/sh01/gateway/gw-1/alert");
        assert_eq!(Topic::parse(&s).unwrap(), t);
    }

    #[test]
    fn topics_with_wildcards_or_extra_levels_are_refused() {
        assert_eq!(
            Topic::parse("wms/sh01/scanner/+/evt"),
            Err(TopicError::Character("device id"))
        );
        assert_eq!(
            Topic::parse("wms/sh01/scanner/a/evt/x"),
            Err(TopicError::Shape)
        );
        assert_eq!(
            Topic::parse("xyz/sh01/scanner/a/evt"),
            Err(TopicError::Shape)
        );
        assert_eq!(Topic::parse("wms/sh01/robot/a/evt"), Err(TopicError::Class));
        assert_eq!(
            Topic::parse("wms/sh01/scanner/a/log"),
            Err(TopicError::Channel)
        );
        assert_eq!(
            Topic::parse("wms//scanner/a/evt"),
            Err(TopicError::Empty("site"))
        );
    }

    #[test]
    fn filters_cover_a_channel_of_a_site() {
        assert_eq!(filter("sh01", None, Channel::Evt), "wms/sh01/+/+/evt");
        assert_eq!(
            filter("sh01", Some(DeviceClass::Printer), Channel::Reply),
            "wms/sh01/printer/+/reply"
        );
    }
}
