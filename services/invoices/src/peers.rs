//! The payments service as the invoices service calls it: the attachment steps of the sagas,
//! payment intents for PayInvoice, and its event stream.

use settle_platform::Scope;
use settle_platform::client::{Peer, PeerError, PeerSettings};
use settle_proto::events::v1::event_service_client::EventServiceClient;
use settle_proto::settle::payments::v1::payment_attachment_service_client::PaymentAttachmentServiceClient;
use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;
use settle_saga::StepFailure;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Clients of the payments service, sharing one lazily connected channel.
#[derive(Clone, Debug)]
pub struct Payments {
    peer: Peer,
    pub attachments: PaymentAttachmentServiceClient<Channel>,
    pub intents: PaymentIntentServiceClient<Channel>,
    pub events: EventServiceClient<Channel>,
}

impl Payments {
    pub fn connect(url: &str, internal_key: &str) -> Result<Payments, PeerError> {
        let peer = Peer::connect_lazy(url, internal_key, &PeerSettings::default())?;
        let channel = peer.channel();
        Ok(Payments {
            attachments: settle_platform::bounded_client!(PaymentAttachmentServiceClient::new(
                channel.clone()
            )),
            intents: settle_platform::bounded_client!(PaymentIntentServiceClient::new(channel.clone())),
            events: settle_platform::bounded_client!(EventServiceClient::new(channel)),
            peer,
        })
    }

    /// A request made on behalf of `scope`, carrying the current trace.
    pub fn request<T>(&self, scope: &Scope, message: T) -> tonic::Request<T> {
        self.peer.request(scope, message)
    }
}

/// Whether a failed call is a definitive answer (the payments service refused) rather than a
/// failure to get one.
pub fn is_definitive(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::OutOfRange
    )
}

/// A call that did not get a definitive answer: the step is retried (it is idempotent).
pub fn retry(call: &str, status: &Status) -> StepFailure {
    StepFailure::Retry(format!("{call}: {:?} {}", status.code(), status.message()))
}
