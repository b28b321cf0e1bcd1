//! Why a history or a set of final states cannot be checked. Every checker refuses such data with one of these
//! errors rather than drawing a verdict from it, because a malformed history is an error, never a pass.

/// Why a history or a set of final states cannot be checked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckError {
    /// The events do not pair into operations.
    #[error("the history is malformed: {0}; fix the recorder, no verdict can be drawn from this history")]
    MalformedHistory(String),
    /// An acknowledged write carries no version.
    #[error(
        "acknowledged {op} of key {key:?} (event {index}) carries no version; the deployment must return the version of every write it acknowledges"
    )]
    AckWithoutVersion {
        /// Index of the completion event.
        index: u64,
        /// The key written.
        key: String,
        /// `write` or `delete`.
        op: &'static str,
    },
    /// A write invoke has no value.
    #[error("write of key {key:?} (event {index}) has no value; record deletes as `delete`, not as a write of nothing")]
    WriteWithoutValue {
        /// Index of the invoke event.
        index: u64,
        /// The key written.
        key: String,
    },
    /// A completion names a different key or operation than its invoke.
    #[error(
        "completion event {completion_index} does not match its invoke event {invoke_index} (key or operation differs)"
    )]
    CompletionMismatch {
        /// Index of the invoke event.
        invoke_index: u64,
        /// Index of the completion event.
        completion_index: u64,
    },
    /// No region's final state was given.
    #[error("no final state was read from any region; read every region before checking")]
    NoRegions,
    /// A record is filed under another key than its own.
    #[error("region {region} returned a record for key {record_key:?} when asked for {key:?}")]
    StateKeyMismatch {
        /// The region.
        region: String,
        /// The key it was filed under.
        key: String,
        /// The key in the record.
        record_key: String,
    },
}
