//! SQL for the payments tables. Every function takes the account and the caller's executor or
//! transaction, so one use case composes several writes and commits once.

pub mod attachments;
pub mod payment_intents;
pub mod payment_records;
pub mod refund_claims;
pub mod refunds;

use settle_platform::ApiError;

/// A failed read or write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("a stored document could not be decoded")]
    Decode(#[from] prost::DecodeError),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Database(error) => ApiError::from(error),
            StoreError::Decode(error) => ApiError::internal("A stored object could not be read", &error),
        }
    }
}
