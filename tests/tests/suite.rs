//! The three services start together on either backend and answer health, events and keys.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is a clear failure.

use settle_platform::backend_tests;
use settle_platform::testing::TestDatabase;
use settle_proto::events::v1::ListEventsRequest;
use settle_proto::events::v1::event_service_client::EventServiceClient;
use settle_tests::Suite;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

backend_tests! {
    all_three_services_serve_health_and_events => |database: TestDatabase| async move {
        let suite = Suite::start(database.backend()).await.expect("suite starts");
        for server in [&suite.invoices, &suite.payments, &suite.credit_notes] {
            let status = HealthClient::new(server.channel()).check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner().status;
            assert_eq!(status, ServingStatus::Serving as i32);
            let events = EventServiceClient::new(server.channel()).list_events(settle_testkit::authorized(ListEventsRequest::default())).await.unwrap().into_inner();
            assert!(events.data.is_empty());
            let refused = EventServiceClient::new(server.channel()).list_events(tonic::Request::new(ListEventsRequest::default())).await.unwrap_err();
            assert_eq!(refused.code(), Code::Unauthenticated);
        }
    };
}
