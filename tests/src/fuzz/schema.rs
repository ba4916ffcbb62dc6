//! Every RPC of every settle service, read from the descriptor set the servers are built from, and
//! which running service answers it (each server's reflection lists what it serves). A new RPC is
//! fuzzed without any change here.

use std::collections::BTreeSet;

use prost_reflect::{DescriptorPool, MessageDescriptor};
use tonic::transport::Channel;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::process::Service;

/// Services only settle's own services may call (mounted with `add_internal_service`): an API key
/// must be refused there. The descriptor does not say which they are, so they are named here; a new
/// internal service missing from this list is still fuzzed, only without that extra check.
pub const INTERNAL_SERVICES: &[&str] = &[
    "settle.payments.v1.PaymentAttachmentService",
    "settle.payments.v1.RefundClaimService",
    "settle.invoices.v1.CreditNoteLedgerService",
];

/// Services that only test-mode keys may use.
pub const TEST_ONLY_SERVICES: &[&str] = &["settle.payments.v1.TestHelperService"];

/// One RPC and where it is served.
#[derive(Debug, Clone)]
pub struct Method {
    /// `settle.invoices.v1.InvoiceService`
    pub service: String,
    /// `CreateInvoice`
    pub name: String,
    /// `/settle.invoices.v1.InvoiceService/CreateInvoice`
    pub path: String,
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
    pub server_streaming: bool,
    /// The running services that serve it (EventService: all three).
    pub nodes: Vec<Service>,
    /// Reads change nothing; everything else is checked to change nothing when refused.
    pub mutating: bool,
    pub internal: bool,
    pub test_only: bool,
}

impl Method {
    /// `InvoiceService/CreateInvoice`, for reports.
    pub fn short(&self) -> String {
        let service = self.service.rsplit('.').next().unwrap_or(&self.service);
        format!("{service}/{}", self.name)
    }
}

/// Whether a method name reads only (by the naming rules the contracts follow, AIP-131..136).
pub fn is_read(name: &str) -> bool {
    ["Get", "List", "Search", "Preview", "Stream"].iter().any(|verb| name.starts_with(verb))
}

/// Every method of every settle service in `pool`, with the nodes whose reflection lists its
/// service. Methods no node serves are returned too, with no nodes, so the caller reports them.
pub fn catalog(pool: &DescriptorPool, served: &[(Service, BTreeSet<String>)]) -> Vec<Method> {
    let mut methods = Vec::new();
    for service in pool.services() {
        if !service.full_name().starts_with("settle.") {
            continue;
        }
        let nodes: Vec<Service> = served
            .iter()
            .filter(|(_, names)| names.contains(service.full_name()))
            .map(|(node, _)| *node)
            .collect();
        for method in service.methods() {
            methods.push(Method {
                service: service.full_name().to_owned(),
                name: method.name().to_owned(),
                path: format!("/{}/{}", service.full_name(), method.name()),
                input: method.input(),
                output: method.output(),
                server_streaming: method.is_server_streaming(),
                nodes: nodes.clone(),
                mutating: !is_read(method.name()),
                internal: INTERNAL_SERVICES.contains(&service.full_name()),
                test_only: TEST_ONLY_SERVICES.contains(&service.full_name()),
            });
        }
    }
    methods.sort_by(|a, b| a.path.cmp(&b.path));
    methods
}

/// The services a running server lists through reflection (v1).
pub async fn served_services(channel: Channel) -> Result<BTreeSet<String>, tonic::Status> {
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client.server_reflection_info(tokio_stream::once(request)).await?.into_inner();
    let mut names = BTreeSet::new();
    if let Some(answer) = answers.message().await?
        && let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response
    {
        names.extend(list.service.into_iter().map(|s| s.name));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_settle_method_is_in_the_catalog() {
        let pool = DescriptorPool::decode(settle_proto::FILE_DESCRIPTOR_SET).unwrap_or_default();
        let methods = catalog(&pool, &[]);
        assert!(methods.iter().any(|m| m.path == "/settle.invoices.v1.InvoiceService/AttachPayment"));
        assert!(
            methods
                .iter()
                .any(|m| m.path == "/settle.events.v1.EventService/StreamEvents" && m.server_streaming)
        );
        let services: BTreeSet<&str> = methods.iter().map(|m| m.service.as_str()).collect();
        for internal in INTERNAL_SERVICES.iter().chain(TEST_ONLY_SERVICES) {
            assert!(services.contains(internal), "{internal} is not in the descriptor set");
        }
        assert!(!methods.iter().find(|m| m.name == "ListInvoices").is_some_and(|m| m.mutating));
        assert!(methods.iter().find(|m| m.name == "CreateRefund").is_some_and(|m| m.mutating));
    }
}
