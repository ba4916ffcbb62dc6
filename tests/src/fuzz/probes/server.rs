//! Probes of the servers' own limits: metric labels bounded against invented method paths, many
//! concurrent event streams, a burst far above the concurrency limit, and a node started without
//! keys (it must not serve).

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use settle_platform::auth::DEV_API_KEY;
use settle_platform::testing::TestDatabase;
use settle_proto::events::v1::StreamEventsRequest;
use settle_proto::events::v1::event_service_client::EventServiceClient;
use settle_proto::settle::creditnotes::v1 as cnpb;
use settle_proto::settle::creditnotes::v1::credit_note_service_client::CreditNoteServiceClient;
use settle_proto::settle::invoices::v1 as pb;
use settle_proto::settle::invoices::v1::invoice_service_client::InvoiceServiceClient;
use settle_proto::settle::payments::v1 as ppb;
use settle_proto::settle::payments::v1::payment_intent_service_client::PaymentIntentServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::{Probe, ProbeEnv};
use crate::fuzz::oracle;
use crate::fuzz::wire::{self, Answer};
use crate::process::{Service, free_addr};
use crate::rng::Rng;
use crate::scrape::try_scrape;

/// The (service, method) label pairs of a node's RPC metrics.
fn method_labels(metrics: &crate::scrape::Metrics) -> BTreeSet<(String, String)> {
    metrics
        .samples
        .iter()
        .filter_map(|s| Some((s.labels.get("rpc_service")?.clone(), s.labels.get("rpc_method")?.clone())))
        .collect()
}

/// 200 invented method paths, unauthenticated, must not become 200 metric label values.
pub async fn metric_labels(env: &ProbeEnv<'_>, p: &mut Probe) {
    if env.metrics.is_empty() {
        p.notes.push("no node exposes metrics: skipped".into());
        return;
    }
    let mut rng = Rng::fork(env.seed, 0x9_0000);
    for (service, addr) in &env.metrics {
        let before = match try_scrape(*addr).await {
            Ok(metrics) => method_labels(&metrics),
            Err(problem) => {
                return p.fail("scraping /metrics failed", &format!("{service:?} /metrics"), "-", &problem);
            }
        };
        let channel = env.channels.of(*service);
        for n in 0..200 {
            let token = rng.next_u64() % 1_000_000;
            let path = match n % 3 {
                0 => format!("/settle.probe{token}.v1.ProbeService/Probe{token}"),
                1 => format!("/settle.invoices.v1.InvoiceService/Probe{token}"),
                _ => format!("/probe{token}/Probe{token}x{n}"),
            };
            p.requests += 1;
            match wire::unary(channel, &path, vec![], tonic::metadata::MetadataMap::new(), env.deadline).await
            {
                Answer::Hung => {
                    p.fail("hang (no answer within the deadline)", "(invented method)", "-", &path)
                }
                Answer::Ok(_) => {
                    p.fail("an invented method path was answered OK", "(invented method)", "OK", &path)
                }
                Answer::Err(status) => {
                    p.refused += 1;
                    p.codes.push(status.code());
                    if !matches!(status.code(), Code::Unimplemented | Code::Unauthenticated | Code::NotFound)
                    {
                        p.fail(
                            "an invented method path refused with an unexpected code",
                            "(invented method)",
                            &super::code(&status),
                            status.message(),
                        );
                    }
                }
            }
        }
        let after = match try_scrape(*addr).await {
            Ok(metrics) => method_labels(&metrics),
            Err(problem) => {
                return p.fail("scraping /metrics failed", &format!("{service:?} /metrics"), "-", &problem);
            }
        };
        let new: Vec<&(String, String)> = after.difference(&before).collect();
        let invented: Vec<_> = new
            .iter()
            .filter(|(s, m)| s.contains("probe") || m.contains("Probe") || m.contains("probe"))
            .collect();
        if let Some((s, m)) = invented.first() {
            let shown = format!("{} new labels from 200 invented paths, e.g. {s}/{m}", invented.len());
            p.fail(
                "metric labels taken from unauthenticated method paths",
                &format!("{service:?} /metrics"),
                "-",
                &shown,
            );
        }
        p.notes.push(format!(
            "{service:?}: {} method label pairs before, {} after",
            before.len(),
            after.len()
        ));
    }
}

/// Opening many streams at once: refused ones are RESOURCE_EXHAUSTED, and other calls still answer.
pub async fn streams(env: &ProbeEnv<'_>, p: &mut Probe) {
    let count = if env.ci { 72 } else { 96 };
    let filtered = 4;
    // The streams on a connection of their own: the ordinary calls below go over the usual one.
    let Some(addr) = env.addrs.iter().find(|(s, _)| *s == Service::Payments).map(|(_, a)| *a) else { return };
    let channel = settle_testkit::channel(addr);
    let opens = (0..count + filtered).map(|n| {
        let channel = channel.clone();
        let types = if n >= count { vec!["probe.matches_nothing".to_owned()] } else { vec![] };
        async move {
            let mut client = EventServiceClient::new(channel);
            let request =
                settle_testkit::with_key(StreamEventsRequest { types, ..Default::default() }, DEV_API_KEY);
            tokio::time::timeout(Duration::from_secs(10), client.stream_events(request)).await
        }
    });
    let answers = futures::future::join_all(opens).await;
    let rpc = "EventService/StreamEvents";
    let mut open = Vec::new();
    for answer in answers {
        p.requests += 1;
        match answer {
            Err(_) => p.fail("hang (stream did not open within the deadline)", rpc, "-", ""),
            Ok(Ok(stream)) => {
                p.succeeded += 1;
                open.push(stream.into_inner());
            }
            Ok(Err(status)) => {
                p.judge_refusal(rpc, &status);
                if status.code() != Code::ResourceExhausted && !oracle::is_violation_code(status.code()) {
                    p.fail(
                        "a stream over the cap refused with another code",
                        rpc,
                        &super::code(&status),
                        status.message(),
                    );
                }
            }
        }
    }
    if open.len() == count + filtered {
        p.fail(
            format!("no per-account stream cap: all {} concurrent streams opened", open.len()),
            rpc,
            "OK",
            "",
        );
    }
    p.notes.push(format!("{} of {} concurrent streams opened", open.len(), count + filtered));
    // While they are open, every service answers an ordinary call in time.
    ordinary_calls(env, p).await;
    // A stream that opened and then ended must have ended cleanly.
    for stream in &mut open {
        if let Ok(Err(status)) = tokio::time::timeout(Duration::from_millis(20), stream.message()).await
            && status.code() != Code::ResourceExhausted
        {
            p.judge_refusal(rpc, &status);
        }
    }
    drop(open);
}

/// One plain read on each service, within the deadline.
async fn ordinary_calls(env: &ProbeEnv<'_>, p: &mut Probe) {
    let list = pb::ListInvoicesRequest { limit: Some(1), ..Default::default() };
    let answer = p
        .call(
            "InvoiceService/ListInvoices",
            InvoiceServiceClient::new(env.channels.invoices.clone())
                .list_invoices(p.request(list, DEV_API_KEY)),
        )
        .await;
    p.expect_ok("InvoiceService/ListInvoices", answer, "a plain read under load");
    let list = ppb::ListPaymentIntentsRequest { limit: Some(1), ..Default::default() };
    let answer = p
        .call(
            "PaymentIntentService/ListPaymentIntents",
            PaymentIntentServiceClient::new(env.channels.payments.clone())
                .list_payment_intents(p.request(list, DEV_API_KEY)),
        )
        .await;
    p.expect_ok("PaymentIntentService/ListPaymentIntents", answer, "a plain read under load");
    let list = cnpb::ListCreditNotesRequest { limit: Some(1), ..Default::default() };
    let answer = p
        .call(
            "CreditNoteService/ListCreditNotes",
            CreditNoteServiceClient::new(env.channels.credit_notes.clone())
                .list_credit_notes(p.request(list, DEV_API_KEY)),
        )
        .await;
    p.expect_ok("CreditNoteService/ListCreditNotes", answer, "a plain read under load");
}

/// One read of `service` on `channel`, as the burst sends it.
async fn burst_call(service: Service, channel: Channel, deadline: Duration) -> Option<Result<(), Status>> {
    let call = async {
        match service {
            Service::Invoices => {
                let mut request = settle_testkit::with_key(
                    pb::ListInvoicesRequest { limit: Some(3), ..Default::default() },
                    DEV_API_KEY,
                );
                request.set_timeout(deadline);
                InvoiceServiceClient::new(channel).list_invoices(request).await.map(|_| ())
            }
            Service::Payments => {
                let mut request = settle_testkit::with_key(
                    ppb::ListPaymentIntentsRequest { limit: Some(3), ..Default::default() },
                    DEV_API_KEY,
                );
                request.set_timeout(deadline);
                PaymentIntentServiceClient::new(channel).list_payment_intents(request).await.map(|_| ())
            }
            Service::CreditNotes => {
                let mut request = settle_testkit::with_key(
                    cnpb::ListCreditNotesRequest { limit: Some(3), ..Default::default() },
                    DEV_API_KEY,
                );
                request.set_timeout(deadline);
                CreditNoteServiceClient::new(channel).list_credit_notes(request).await.map(|_| ())
            }
        }
    };
    tokio::time::timeout(deadline + Duration::from_secs(1), call).await.ok()
}

/// A burst far above the servers' concurrency: every answer a success or RESOURCE_EXHAUSTED /
/// UNAVAILABLE within the deadline, nothing hangs, health stays up.
pub async fn overload(env: &ProbeEnv<'_>, p: &mut Probe) {
    let (per_service, connections) = if env.ci { (900, 6) } else { (2_000, 8) };
    let mut calls = Vec::new();
    for service in oracle::SERVICES {
        let Some(addr) = env.addrs.iter().find(|(s, _)| *s == service).map(|(_, a)| *a) else { continue };
        // Connections of their own, so the burst is not queued behind one connection's stream limit.
        let channels: Vec<Channel> = (0..connections).map(|_| settle_testkit::channel(addr)).collect();
        for n in 0..per_service {
            let channel = channels[n % connections].clone();
            calls.push(async move { (service, burst_call(service, channel, env.deadline).await) });
        }
    }
    let started = Instant::now();
    let answers = futures::future::join_all(calls).await;
    let took = started.elapsed();
    let (mut ok, mut shed) = (0, 0);
    for (service, answer) in answers {
        p.requests += 1;
        let rpc = format!("{service:?} burst");
        match answer {
            None => p.fail("hang under overload (no answer within the deadline)", &rpc, "-", ""),
            Some(Ok(())) => {
                ok += 1;
                p.succeeded += 1;
            }
            Some(Err(status)) if matches!(status.code(), Code::ResourceExhausted | Code::Unavailable) => {
                shed += 1;
                p.refused += 1;
                p.codes.push(status.code());
            }
            Some(Err(status)) => {
                p.refused += 1;
                p.fail(
                    "overload answered with neither success nor RESOURCE_EXHAUSTED/UNAVAILABLE",
                    &rpc,
                    &super::code(&status),
                    status.message(),
                );
            }
        }
    }
    p.notes.push(format!("{} calls at once: {ok} served, {shed} shed, in {took:.1?}", per_service * 3));
    for service in oracle::SERVICES {
        if !oracle::healthy(env.channels.of(service)).await {
            p.fail("not healthy right after the burst", &format!("{service:?} process"), "-", "");
        }
    }
    ordinary_calls(env, p).await;
}

/// A node started without `SETTLE_API_KEYS` and without any development flag exits non-zero
/// instead of serving.
pub async fn fail_closed(env: &ProbeEnv<'_>, p: &mut Probe) {
    let Some(database) = TestDatabase::new(env.backend).await else {
        return p.notes.push("no database for the node: skipped".into());
    };
    let addr = free_addr();
    let mut command = tokio::process::Command::new(&env.binary);
    command
        .arg(Service::Payments.arg())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database.url())
        .env("SETTLE_LISTEN_ADDR", addr.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    p.requests += 1;
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return p.fail(
                "settle-node could not be started",
                "settle-node payments",
                "-",
                &error.to_string(),
            );
        }
    };
    let rpc = "settle-node payments (no SETTLE_API_KEYS)";
    let probe_node =
        crate::process::Node::new(env.binary.clone(), Service::Payments, addr, Default::default());
    let started = Instant::now();
    let exited = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if probe_node.try_wait_healthy(Duration::from_millis(100)).await => {
                p.fail(
                    "a node without keys started and serves",
                    rpc,
                    "running",
                    &format!("health SERVING on {addr}"),
                );
                break None;
            }
            Ok(None) if started.elapsed() > Duration::from_secs(15) => {
                p.fail(
                    "a node without keys kept running",
                    rpc,
                    "running",
                    "neither exited nor served in 15 s",
                );
                break None;
            }
            Ok(None) => {}
            Err(error) => {
                p.fail("waiting for the node failed", rpc, "-", &error.to_string());
                break None;
            }
        }
    };
    match exited {
        Some(status) if status.success() => p.fail("a node without keys exited 0", rpc, "exit 0", ""),
        Some(status) => {
            p.refused += 1;
            let mut said = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = tokio::time::timeout(Duration::from_secs(1), stderr.read_to_string(&mut said)).await;
            }
            let line = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_owned();
            p.notes.push(format!("exited {status}: {}", oracle::short(&line)));
        }
        None => {
            let _ = child.kill().await;
        }
    }
    drop(database);
}
