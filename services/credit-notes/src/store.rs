//! SQL for the credit-notes tables. Every function takes the account and the caller's executor or
//! transaction, so one use case composes several writes and commits once.

pub mod credit_notes;

use settle_platform::ApiError;

/// A failed read or write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("a stored document could not be decoded")]
    Decode(#[from] prost::DecodeError),
    #[error("a stored row is invalid: {0}")]
    Corrupt(&'static str),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Database(error) => ApiError::from(error),
            StoreError::Decode(_) | StoreError::Corrupt(_) => {
                ApiError::internal("A stored credit note could not be read", &error)
            }
        }
    }
}
