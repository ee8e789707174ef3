//! The carrier side: framing ([`codec`]), one session per connection ([`session`]), bind
//! slots that reconnect ([`carrier`]), and the one table that classifies command statuses
//! ([`status`]).

pub mod carrier;
pub mod codec;
pub mod session;
pub mod status;
