//! One player request, from URL to answer.
//!
//! Read top to bottom, this is the request path: [`url::parse`] turns the
//! path into a [`url::Route`]; [`worker::Decider::decide`] takes the current
//! topology and routing state, [`decide::prepare`] resolves the channel,
//! program or asset and builds the candidate tiers for the client address,
//! the chosen policy version decides (with fallback when it fails), and
//! [`decide::finish`] checks its answer and renders the `Location`. The HTTP
//! layer only translates the resulting [`Outcome`] to the wire.

pub mod acceptance;
pub mod client;
pub mod decide;
pub mod url;
pub mod worker;

pub use worker::{Decided, Decider};

use std::borrow::Cow;

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `302 Found` to this URL.
    Redirect(String),
    /// An error status with a short plain-text reason.
    Refuse {
        /// HTTP status code.
        status: u16,
        /// Reason sent as the body.
        reason: Cow<'static, str>,
    },
}

impl Outcome {
    /// A refusal with a static reason.
    pub const fn refuse(status: u16, reason: &'static str) -> Self {
        Outcome::Refuse {
            status,
            reason: Cow::Borrowed(reason),
        }
    }
}
