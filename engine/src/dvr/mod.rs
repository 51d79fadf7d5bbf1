//! Recordings on the DVR servers, as the old system made them: every
//! round ([`worker`]) schedules each programme about to start on a DVR of
//! its channel's recording group, once per active stream; follows the
//! recordings that should have started or ended until they are completed
//! (or failed); and, after retention, removes them from the DVR with
//! their programme. What to do is decided from a snapshot of the topology
//! ([`plan`]); every change goes through the one door, as one audited
//! batch per round.
//!
//! A DVR is reached through the [`Dvr`] trait; the first driver speaks
//! the old system's SOAP API ([`soap`]), with credentials from a file of
//! their own ([`secrets`]), never the topology.

pub mod plan;
pub mod secrets;
pub mod soap;
pub mod worker;

use crate::topology::model::RecordStatus;
use time::OffsetDateTime;

/// A recording to ask a DVR for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// When it starts.
    pub start: OffsetDateTime,
    /// When it ends.
    pub end: OffsetDateTime,
    /// The stream to record: `{scheme}://{edge host}/{stream path}`.
    pub asset: String,
    /// `{code name}/{protocol}/{encryption}/{programme}`, which identifies
    /// the recording on the DVR.
    pub placement: String,
    /// `format=…;encryption=…;channel=…[;storageID=…]`.
    pub params: String,
}

/// Why a DVR call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DvrError {
    /// The DVR answered with a fault: it will not do it (an unknown
    /// recording, a refused schedule). The record is in error.
    #[error("DVR fault {code}: {message}")]
    Fault {
        /// The fault's code.
        code: String,
        /// Its text.
        message: String,
    },
    /// No answer, or one that is not the API's (try again next round).
    #[error("DVR unreachable: {0}")]
    Transport(String),
}

/// A DVR server's recording API.
#[async_trait::async_trait]
pub trait Dvr: Send + Sync {
    /// Asks for a recording; the answer is its path on the DVR.
    async fn schedule(&self, recording: &Schedule) -> Result<String, DvrError>;
    /// The recording's state.
    async fn status(&self, path: &str) -> Result<RecordStatus, DvrError>;
    /// Removes a recording (and what it recorded).
    async fn remove(&self, path: &str) -> Result<(), DvrError>;
    /// Cancels a recording that has not ended.
    async fn cancel(&self, path: &str) -> Result<(), DvrError>;
}
