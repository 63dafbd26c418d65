//! Training runs in the audit trail: a job's end is one `FinishJob` record (who queued it,
//! what it asked, how it ended, the models it registered), and every model a run put into
//! service is a `PromoteModel` record of its own, so that searching for promotions finds
//! these beside the ones people made. The command line's `ml train` writes the same records
//! under its own name (`TrainModels`).

use std::sync::Arc;

use async_trait::async_trait;
use ecocityhub_ml::jobs::{JobObserver, JobOutcome, TrainedModel};
use ecocityhub_observe::audit::{Audit, AuditEvent, UserIdentity};
use ecocityhub_store::ml::JobRecord;
use serde_json::{json, Value};

/// Where the worker's records come from (CloudTrail's `eventSource`).
pub const SOURCE: &str = "jobs";

/// Writes the records of each job the worker ends.
pub struct AuditJobs {
    pub audit: Audit,
}

impl AuditJobs {
    pub fn new(audit: Audit) -> Arc<AuditJobs> {
        Arc::new(AuditJobs { audit })
    }
}

#[async_trait]
impl JobObserver for AuditJobs {
    async fn job_finished(&self, job: &JobRecord, outcome: &JobOutcome) {
        let identity = UserIdentity::system(&format!("training job {}", job.id));
        let mut parameters = json!({
            "jobId": job.id,
            "createdBy": job.created_by,
            "createdAt": job.created_at.to_rfc3339(),
        });
        if let Some(started) = job.started_at {
            parameters["startedAt"] = json!(started.to_rfc3339());
        }
        let events = outcome_events(SOURCE, "FinishJob", identity, parameters, outcome);
        for event in events {
            let name = event.event_name.clone();
            if let Err(e) = self.audit.record(event).await {
                tracing::error!(job = job.id, event = %name, error = %e,
                    "could not write a training job's audit record");
            }
        }
    }
}

/// The records of one training run: the run itself (`name`, with `parameters` and the
/// request), then one `PromoteModel` per model it put into service.
pub fn outcome_events(
    source: &str,
    name: &str,
    identity: UserIdentity,
    mut parameters: Value,
    outcome: &JobOutcome,
) -> Vec<AuditEvent> {
    if let Some(request) = &outcome.request {
        parameters["request"] = serde_json::to_value(request).unwrap_or(Value::Null);
    }
    let response = json!({
        "status": outcome.status.as_str(),
        "message": outcome.message,
        "series": outcome.series,
        "models": outcome.models.iter().map(model_json).collect::<Vec<_>>(),
        "failures": outcome.failures,
    });
    let mut run = AuditEvent::new(source, name, identity.clone())
        .parameters(parameters.clone())
        .response(response);
    if let Some(code) = outcome.error_code {
        run = run.failed(code, &outcome.message);
    }
    let promotions = outcome.models.iter().filter(|m| m.promoted).map(|m| {
        AuditEvent::new(source, "PromoteModel", identity.clone())
            .parameters(json!({ "modelId": m.model.id, "by": parameters.get("jobId")
                .map_or_else(|| json!(name), |id| json!({ "jobId": id })) }))
            .response(model_json(m))
    });
    std::iter::once(run).chain(promotions).collect()
}

fn model_json(m: &TrainedModel) -> Value {
    json!({
        "modelId": m.model.id,
        "station": m.model.station.as_str(),
        "parameter": m.model.parameter,
        "version": m.model.version,
        "status": m.model.status,
        "promoted": m.promoted,
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use ecocityhub_domain::{Parameter, StationId};
    use ecocityhub_ml::training::TrainRequest;
    use ecocityhub_store::ml::{JobStatus, ModelRecord};

    use super::*;

    fn model(id: i64, promoted: bool) -> TrainedModel {
        let now = Utc::now();
        TrainedModel {
            model: ModelRecord {
                id,
                station: StationId::parse("s1").unwrap(),
                parameter: Parameter::Pm25,
                version: id,
                created_at: now,
                artifact_key: format!("models/{id}"),
                checksum: "00".into(),
                size_bytes: 1,
                training_from: now,
                training_to: now,
                data_fingerprint: "f".into(),
                code_version: "1".into(),
                metrics: "{}".into(),
                job_id: Some(7),
                status: if promoted { "serving" } else { "candidate" }.into(),
                promoted_at: None,
            },
            promoted,
        }
    }

    #[test]
    fn a_run_is_one_record_and_each_promotion_another() {
        let outcome = JobOutcome::of_run(
            TrainRequest::default(),
            3,
            vec![model(1, true), model(2, false)],
            vec!["s1/no2: not enough data".into()],
        );
        let events = outcome_events(
            SOURCE,
            "FinishJob",
            UserIdentity::system("training job 7"),
            json!({ "jobId": 7 }),
            &outcome,
        );
        let names: Vec<&str> = events.iter().map(|e| e.event_name.as_str()).collect();
        assert_eq!(names, ["FinishJob", "PromoteModel"]);
        let run = &events[0];
        assert!(!run.is_error());
        let response = run.response_elements.as_ref().unwrap();
        assert_eq!(response["message"], "2 models trained, 1 failed");
        assert_eq!(response["models"][1]["promoted"], false);
        assert_eq!(response["failures"][0], "s1/no2: not enough data");
        assert_eq!(
            run.request_parameters.as_ref().unwrap()["request"]["promote"],
            false
        );
        let promotion = &events[1];
        assert_eq!(promotion.request_parameters.as_ref().unwrap()["modelId"], 1);
        assert_eq!(
            promotion.request_parameters.as_ref().unwrap()["by"]["jobId"],
            7
        );
        assert_eq!(
            promotion.user_identity.id.as_deref(),
            Some("training job 7")
        );
    }

    #[test]
    fn a_failed_run_carries_its_code_and_promotes_nothing() {
        let outcome = JobOutcome::of_run(TrainRequest::default(), 1, vec![], vec!["x".into()]);
        assert_eq!(outcome.status, JobStatus::Failed);
        let events = outcome_events(
            "cli",
            "TrainModels",
            UserIdentity::cli(),
            json!({}),
            &outcome,
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].error_code.as_deref(), Some("AllSeriesFailed"));
        assert_eq!(
            events[0].error_message.as_deref(),
            Some("all 1 series failed")
        );
    }
}
