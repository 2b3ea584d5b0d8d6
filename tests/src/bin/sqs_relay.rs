//! `cachefill-sqs-relay`: carries moto's S3 notifications from an SQS queue to a function under
//! cargo-lambda's emulator, as S3 invokes the validator on AWS. `scripts/dev-stack` runs it.

use std::time::Duration;

use anyhow::Context;
use cachefill_e2e::invoke::lambda_client;
use cachefill_e2e::relay::Relay;
use cachefill_e2e::sqs::SqsQueue;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Relay S3 notifications from an SQS queue on moto to a Lambda function")]
struct Args {
    /// moto's endpoint (SQS).
    #[arg(long)]
    sqs_endpoint: String,
    /// URL of the queue the bucket notifies.
    #[arg(long)]
    queue_url: String,
    /// The emulator's Invoke API endpoint.
    #[arg(long)]
    invoke_endpoint: String,
    /// The function to invoke with each S3 event.
    #[arg(long, default_value = "object-validator")]
    function: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let args = Args::parse();
    let queue = SqsQueue::open(&args.sqs_endpoint, &args.region, &args.queue_url)
        .await
        .with_context(|| format!("opening {}", args.queue_url))?;
    let relay = Relay::new(
        queue,
        lambda_client(&args.invoke_endpoint, &args.region),
        &args.function,
    );
    println!("relaying {} -> {}", args.queue_url, args.function);
    loop {
        tokio::select! {
            pass = relay.relay_once(Duration::from_secs(5)) => match pass {
                Ok(report) => {
                    for event in &report.delivered {
                        for record in &event.records {
                            println!(
                                "delivered {}",
                                record.s3.object.key.as_deref().unwrap_or("?")
                            );
                        }
                    }
                    for failed in &report.failed {
                        println!("{} failed (retried later): {}", args.function, failed.payload);
                    }
                }
                Err(e) => {
                    eprintln!("relay: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
