//! How the invoice model's failures reach clients: both are damaged or impossible stored state, so
//! INTERNAL with the details in the log.

use settle_platform::ApiError;

use crate::model::ModelError;
use crate::model::lines::CorruptItem;

impl From<ModelError> for ApiError {
    fn from(error: ModelError) -> Self {
        match error {
            ModelError::Status { .. } => ApiError::internal("A stored invoice could not be read", &error),
            ModelError::Overflow { .. } => ApiError::internal("An invoice's amounts overflowed", &error),
        }
    }
}

impl From<CorruptItem> for ApiError {
    fn from(error: CorruptItem) -> Self {
        ApiError::internal("A stored invoice item could not be read", &error)
    }
}
