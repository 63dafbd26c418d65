//! The AWS side against moto's server (started here on a port it picks): SNS topics, an HTTP
//! subscription with a filter policy, publishing with attributes (moto delivers to our
//! receiver), and an SES e-mail. What moto does not check is listed in `src/aws.rs` and tested
//! on our own code in `tests/notify.rs`.
#![cfg(feature = "aws")]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_sns::config::{Credentials, Region};
use ecocityhub_notify::aws::{SesMailer, SnsPublisher};
use ecocityhub_notify::channels::OutgoingMail;
use ecocityhub_notify::{Message, Protocol, Publisher, SubscribeRequest, Topic};
use ecocityhub_testkit::HelperServer;
use serde_json::{json, Value};

fn helper(script: &str, what: &str) -> Option<HelperServer> {
    let python = ecocityhub_testkit::require_test_python(what)?;
    let mut cmd = Command::new(python);
    cmd.arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join(script),
    );
    Some(HelperServer::start(cmd, "listening on", Duration::from_secs(60)).expect("helper starts"))
}

async fn aws_config(moto: &HelperServer) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(ecocityhub_notify::aws::https_client())
        .endpoint_url(moto.base_url())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

#[tokio::test]
async fn sns_fans_out_to_http_subscribers_by_filter_policy() {
    let Some(moto) = helper("moto_server.py", "moto") else {
        return;
    };
    let Some(receiver) = helper("webhook_receiver.py", "the webhook receiver") else {
        return;
    };
    let config = aws_config(&moto).await;
    let sns = SnsPublisher::new(aws_sdk_sns::Client::new(&config));
    let topic = Topic::station("s1");
    sns.create_topic(&topic).await.unwrap();
    let subscribe = |path: &str, policy: Option<Value>| SubscribeRequest {
        topic: topic.clone(),
        owner: None,
        protocol: Protocol::Webhook,
        endpoint: format!("{}{path}", receiver.base_url()),
        filter_policy: policy,
        push_keys: None,
        endpoint_verified: false,
    };
    let all = sns.subscribe(&subscribe("/all", None)).await.unwrap();
    // moto confirms HTTP subscriptions at once (real SNS sends a SubscriptionConfirmation).
    assert_eq!(all.subscription.status, "confirmed");
    sns.subscribe(&subscribe(
        "/unhealthy",
        Some(json!({"aqi": [{"numeric": [">=", 151]}]})),
    ))
    .await
    .unwrap();
    // Our checks run before SNS: a bad policy never reaches it.
    assert!(sns
        .subscribe(&subscribe("/bad", Some(json!({"aqi": "x"}))))
        .await
        .is_err());

    let low = Message::new(&topic, "alert.opened", "USG", "sensitive groups").attribute("aqi", 120);
    let high = Message::new(&topic, "alert.opened", "Unhealthy", "everyone").attribute("aqi", 160);
    let receipt = sns.publish(&topic, &low).await.unwrap();
    assert!(!receipt.message_id.is_empty());
    sns.publish(&topic, &high).await.unwrap();

    let http = reqwest::Client::new();
    let start = Instant::now();
    let log: Vec<Value> = loop {
        let log: Vec<Value> = http
            .get(format!("{}/log", receiver.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if log.len() >= 3 || start.elapsed() > Duration::from_secs(20) {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let notifications: Vec<(String, Value)> = log
        .iter()
        .map(|e| {
            let body: Value = serde_json::from_str(e["body"].as_str().unwrap()).unwrap();
            (e["path"].as_str().unwrap().to_string(), body)
        })
        .filter(|(_, b)| b["Type"] == "Notification")
        .collect();
    let to = |path: &str| notifications.iter().filter(|(p, _)| p == path).count();
    assert_eq!(to("/all"), 2);
    assert_eq!(
        to("/unhealthy"),
        1,
        "moto applied the numeric filter policy"
    );
    let (_, n) = notifications
        .iter()
        .find(|(p, _)| p == "/unhealthy")
        .unwrap();
    let event: Value = serde_json::from_str(n["Message"].as_str().unwrap()).unwrap();
    assert_eq!(
        event["id"],
        json!(high.id),
        "the event our webhooks get, inside SNS's envelope"
    );
    assert_eq!(n["Subject"], "Unhealthy");
    // moto filters on the attributes but leaves them out of HTTP notifications (SNS sends them).
}

#[tokio::test]
async fn ses_accepts_mail_from_a_verified_identity() {
    let Some(moto) = helper("moto_server.py", "moto") else {
        return;
    };
    let config = aws_config(&moto).await;
    let ses = aws_sdk_sesv2::Client::new(&config);
    ses.create_email_identity()
        .email_identity("alerts@city.example")
        .send()
        .await
        .unwrap();
    let mailer = SesMailer::new(ses, "alerts@city.example");
    let mail = OutgoingMail {
        message_id: "msg_1".into(),
        to: "citizen@example.org".into(),
        subject: "Air quality alert".into(),
        text: "PM2.5 is unhealthy".into(),
        html: Some("<p>PM2.5 is unhealthy</p>".into()),
        unsubscribe_url: Some("https://city.example/unsubscribe/tok".into()),
    };
    // moto accepts and records it but delivers nothing; the mail itself is tested with aiosmtpd.
    mailer.send(&mail).await.unwrap();
}
