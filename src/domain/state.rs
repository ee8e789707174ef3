use std::fmt;

/// A message's lifecycle, as in the design: `queued -> sending -> sent -> delivered |
/// undelivered | failed | expired`. `rejected` exists only in API answers, never in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageState {
    Queued,
    Sending,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    Expired,
}

impl MessageState {
    pub const ALL: [MessageState; 7] = [
        Self::Queued,
        Self::Sending,
        Self::Sent,
        Self::Delivered,
        Self::Undelivered,
        Self::Failed,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Final states never change again (a late receipt does not resurrect a failed message).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Delivered | Self::Undelivered | Self::Failed | Self::Expired
        )
    }
}

/// A set of message states: which `message.status` events an app wants (`[[apps]]
/// status_events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateSet(u8);

impl StateSet {
    pub const EMPTY: StateSet = StateSet(0);

    /// Every state a `message.status` event can carry: all of them after `queued`.
    pub fn status_events() -> Self {
        MessageState::ALL
            .into_iter()
            .filter(|s| *s != MessageState::Queued)
            .fold(Self::EMPTY, Self::with)
    }

    pub fn with(self, s: MessageState) -> Self {
        Self(self.0 | 1 << s as u8)
    }

    pub fn contains(self, s: MessageState) -> bool {
        self.0 & (1 << s as u8) != 0
    }
}

impl fmt::Display for MessageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_events_should_hold_every_state_but_queued() {
        let all = StateSet::status_events();
        for s in MessageState::ALL {
            assert_eq!(all.contains(s), s != MessageState::Queued, "{s}");
        }
        let finals = MessageState::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .fold(StateSet::EMPTY, StateSet::with);
        assert!(finals.contains(MessageState::Expired) && !finals.contains(MessageState::Sent));
        assert!(!StateSet::EMPTY.contains(MessageState::Delivered));
    }

    #[test]
    fn every_state_round_trips_through_its_name() {
        for st in MessageState::ALL {
            assert_eq!(MessageState::parse(st.as_str()), Some(st));
        }
        assert_eq!(MessageState::parse("rejected"), None);
    }
}
