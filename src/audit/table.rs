//! The audit trail as one Arrow table (`audit.events`), for operators' SQL.
//!
//! One row per record, flattened: no token, no raw key (keys are audit-only pseudonyms).

use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder, TimestampMillisecondBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::AuditEvent;

/// The table's columns.
pub fn events_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let count = |name: &str| Field::new(name, DataType::UInt64, false);
    Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        text("request_id"),
        text("kind"),
        text("action"),
        text("stage"),
        text("outcome"),
        text("reason"),
        text("issuer"),
        text("subject"),
        text("organisation"),
        text("habilitation"),
        text("legal_basis"),
        text("datasets"),
        text("sql"),
        text("context"),
        text("recipient"),
        text("object"),
        text("lookup_key"),
        text("key_versions"),
        count("rows"),
        count("bytes"),
        count("duration_ms"),
        text("policy_version"),
    ]))
}

/// `events` as one batch of [`events_schema`].
pub fn events_batch(events: &[AuditEvent]) -> Result<RecordBatch, ArrowError> {
    let n = events.len();
    let mut time = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut texts: Vec<StringBuilder> = (0..18).map(|_| StringBuilder::new()).collect();
    let mut counts: Vec<UInt64Builder> = (0..3).map(|_| UInt64Builder::with_capacity(n)).collect();
    let mut policy = StringBuilder::new();
    for e in events {
        time.append_value(e.time.timestamp_millis());
        let kind = serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        let stage = e.stage.and_then(|s| {
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
        });
        let outcome = serde_json::to_value(e.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string));
        let principal = e.principal.as_ref();
        let habilitation = e.habilitation.as_ref();
        let lookup = e.lookup.as_ref();
        let datasets = e
            .datasets
            .iter()
            .map(|d| d.dataset.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let keys = lookup.map(|l| {
            l.key
                .iter()
                .chain(l.keys.iter())
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(",")
        });
        let versions = e
            .key_versions
            .iter()
            .map(|v| format!("{}:{}", v.domain, v.version))
            .collect::<Vec<_>>()
            .join(",");
        let values: [Option<String>; 18] = [
            Some(e.request_id.clone()),
            kind,
            Some(e.action.clone()),
            stage,
            outcome,
            e.reason.clone(),
            principal.map(|p| p.issuer.clone()),
            principal.map(|p| p.subject.clone()),
            principal.and_then(|p| p.organisation.clone()),
            habilitation.map(|h| h.id.clone()),
            habilitation.map(|h| h.legal_basis.clone()),
            (!datasets.is_empty()).then_some(datasets),
            e.sql.as_ref().map(|s| s.text.clone()),
            lookup.map(|l| l.context.clone()),
            lookup.map(|l| l.recipient.clone()),
            lookup.map(|l| l.object.clone()),
            keys.filter(|k| !k.is_empty()),
            (!versions.is_empty()).then_some(versions),
        ];
        for (builder, value) in texts.iter_mut().zip(values) {
            builder.append_option(value);
        }
        counts[0].append_value(e.rows);
        counts[1].append_value(e.bytes);
        counts[2].append_value(e.duration_ms);
        policy.append_option(e.policy_version.clone());
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(time.finish())];
    columns.extend(texts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.extend(counts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    columns.push(Arc::new(policy.finish()));
    RecordBatch::try_new(events_schema(), columns)
}
