//! The invoices and payments services as credit-notes calls them: their public APIs for the facts a
//! note is computed from (called with the internal key on behalf of the caller's account), and the
//! saga-facing steps (`CreditNoteLedgerService`, `RefundClaimService`).

use settle_platform::ApiError;
use settle_platform::Scope;
use settle_platform::client::{Peer, PeerError, PeerSettings};
use settle_proto::common::v1::ErrorReason;
use settle_proto::settle::invoices::v1::credit_note_ledger_service_client::CreditNoteLedgerServiceClient;
use settle_proto::settle::invoices::v1::invoice_payment_service_client::InvoicePaymentServiceClient;
use settle_proto::settle::invoices::v1::invoice_service_client::InvoiceServiceClient;
use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;
use settle_proto::settle::payments::v1::payment_record_service_client::PaymentRecordServiceClient;
use settle_proto::settle::payments::v1::refund_claim_service_client::RefundClaimServiceClient;
use settle_proto::settle::payments::v1::refund_service_client::RefundServiceClient;
use settle_saga::StepFailure;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Clients of the invoices service, sharing one lazily connected channel.
#[derive(Clone, Debug)]
pub struct Invoices {
    peer: Peer,
    pub invoices: InvoiceServiceClient<Channel>,
    pub invoice_payments: InvoicePaymentServiceClient<Channel>,
    pub ledger: CreditNoteLedgerServiceClient<Channel>,
}

impl Invoices {
    pub fn connect(url: &str, internal_key: &str) -> Result<Invoices, PeerError> {
        let peer = Peer::connect_lazy(url, internal_key, &PeerSettings::default())?;
        let channel = peer.channel();
        Ok(Invoices {
            invoices: settle_platform::bounded_client!(InvoiceServiceClient::new(channel.clone())),
            invoice_payments: settle_platform::bounded_client!(InvoicePaymentServiceClient::new(
                channel.clone()
            )),
            ledger: settle_platform::bounded_client!(CreditNoteLedgerServiceClient::new(channel)),
            peer,
        })
    }

    /// A request made on behalf of `scope`, carrying the current trace.
    pub fn request<T>(&self, scope: &Scope, message: T) -> tonic::Request<T> {
        self.peer.request(scope, message)
    }
}

/// Clients of the payments service, sharing one lazily connected channel.
#[derive(Clone, Debug)]
pub struct Payments {
    peer: Peer,
    pub intents: PaymentIntentServiceClient<Channel>,
    pub records: PaymentRecordServiceClient<Channel>,
    pub refunds: RefundServiceClient<Channel>,
    pub claims: RefundClaimServiceClient<Channel>,
}

impl Payments {
    pub fn connect(url: &str, internal_key: &str) -> Result<Payments, PeerError> {
        let peer = Peer::connect_lazy(url, internal_key, &PeerSettings::default())?;
        let channel = peer.channel();
        Ok(Payments {
            intents: settle_platform::bounded_client!(PaymentIntentServiceClient::new(channel.clone())),
            records: settle_platform::bounded_client!(PaymentRecordServiceClient::new(channel.clone())),
            refunds: settle_platform::bounded_client!(RefundServiceClient::new(channel.clone())),
            claims: settle_platform::bounded_client!(RefundClaimServiceClient::new(channel)),
            peer,
        })
    }

    /// A request made on behalf of `scope`, carrying the current trace.
    pub fn request<T>(&self, scope: &Scope, message: T) -> tonic::Request<T> {
        self.peer.request(scope, message)
    }
}

/// Whether a failed call is a definitive answer (the peer refused) rather than a failure to get one.
pub fn is_definitive(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::OutOfRange
            | Code::PermissionDenied
    )
}

/// A call that did not get a definitive answer: the step is retried (it is idempotent).
pub fn retry(call: &str, status: &Status) -> StepFailure {
    StepFailure::Retry(format!("{call}: {:?} {}", status.code(), status.message()))
}

/// The `ErrorInfo.reason` of a peer's refusal (empty when it sent none).
pub fn reason_of(status: &Status) -> String {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|i| i.reason).unwrap_or_default()
}

/// A peer failed while a request gathered facts: the request can be retried.
pub fn unavailable(what: &str, status: &Status) -> ApiError {
    if is_definitive(status) {
        // A refusal of a read we built ourselves is a bug on one side or the other.
        tracing::error!(code = ?status.code(), message = status.message(), "{what} was refused");
        return ApiError::new(
            Code::Internal,
            ErrorReason::InternalError,
            format!("{what} failed; the server logged the details."),
        );
    }
    tracing::warn!(code = ?status.code(), message = status.message(), "{what} failed");
    ApiError::new(
        Code::Unavailable,
        ErrorReason::DependencyUnavailable,
        format!("{what} did not answer; please retry."),
    )
}

/// Both peers.
#[derive(Clone, Debug)]
pub struct Peers {
    pub invoices: Invoices,
    pub payments: Payments,
}

impl Peers {
    pub fn connect(invoices_url: &str, payments_url: &str, internal_key: &str) -> Result<Peers, PeerError> {
        Ok(Peers {
            invoices: Invoices::connect(invoices_url, internal_key)?,
            payments: Payments::connect(payments_url, internal_key)?,
        })
    }
}
