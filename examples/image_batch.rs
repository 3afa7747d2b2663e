//! Child jobs: a workflow resizes a batch of images by fanning out one child job per image,
//! waits (holding no thread) until every child has finished, and gathers the results in order,
//! one of them a failure (a corrupt file). Then a second workflow does the same with FailFast:
//! the corrupt image stops the batch, and the children that had not started are cancelled.
//!
//! ```text
//! cargo run --example image_batch
//! cargo run --example image_batch -- --images 200 --workers 8
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use durable_jobs::sqlite::SqliteStore;
use durable_jobs::{fan_out, Child, Error, FanInStrategy, JobContext, JobFilter, JobOptions, JobStatus, Queue};
use serde::{Deserialize, Serialize};

mod common;

#[derive(Parser, Debug)]
#[command(about = "Resize a batch of images with child jobs (fan-out / fan-in)")]
struct Args {
    /// Images in the batch.
    #[arg(long, default_value_t = 40)]
    images: u32,
    /// Worker threads.
    #[arg(long, default_value_t = 4)]
    workers: usize,
}

/// One image to resize.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Image {
    name: String,
    width: u32,
    height: u32,
}

/// A resized image.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Thumbnail {
    name: String,
    width: u32,
    height: u32,
}

/// A batch summary: thumbnails made and images that failed.
#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    thumbnails: usize,
    failed: Vec<String>,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Fits the image into 256 × 256, keeping its proportions. Image "photo-13.jpg" is corrupt.
fn resize(_: &JobContext, image: Image) -> Result<Thumbnail, Error> {
    std::thread::sleep(Duration::from_millis(20)); // the decoding and resampling
    if image.name == "photo-13.jpg" {
        return Err(Error::permanent(std::io::Error::other("not a JPEG file (corrupt header)")));
    }
    let scale = 256.0 / f64::from(image.width.max(image.height));
    let fit = |side: u32| ((f64::from(side) * scale).round() as u32).max(1);
    Ok(Thumbnail { name: image.name, width: fit(image.width), height: fit(image.height) })
}

/// The batch workflow: one child per image, then the results in the images' order.
fn batch(ctx: &JobContext, (images, strategy): (Vec<Image>, String)) -> Result<Summary, Error> {
    let strategy = if strategy == "fail-fast" { FanInStrategy::FailFast } else { FanInStrategy::CollectAll };
    let children =
        images.iter().map(|image| Child::new("resize", image).options(JobOptions::new().retries(2))).collect();
    let results = fan_out::<Thumbnail>(ctx, children, strategy)?;
    let mut summary = Summary { thumbnails: 0, failed: Vec::new() };
    for (image, result) in images.iter().zip(results) {
        match result {
            Ok(_) => summary.thumbnails += 1,
            Err(failed) => summary.failed.push(format!("{}: {failed}", image.name)),
        }
    }
    Ok(summary)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let queue = Queue::new(SqliteStore::open(temp.path().join("images.db"))?);
    queue.register("resize", resize)?;
    queue.register("batch", batch)?;
    let mut rng = fastrand::Rng::with_seed(42);
    let images: Vec<Image> = (0..args.images)
        .map(|n| Image { name: format!("photo-{n}.jpg"), width: rng.u32(640..=6000), height: rng.u32(480..=4000) })
        .collect();
    let stop = common::Stop::on_signals()?;
    let worker = queue.worker().concurrency(args.workers).start()?;
    for strategy in ["collect-all", "fail-fast"] {
        let started = Instant::now();
        let id = queue.enqueue("batch", &(images.clone(), strategy), JobOptions::new())?;
        println!("batch {id} ({strategy}): {} images, {} worker threads", images.len(), args.workers);
        let Some(info) = stop.wait(&queue, id, Duration::from_secs(120))? else { break };
        if info.status != JobStatus::Completed {
            return Err(format!("batch {id} ended {}: {:?}", info.status, info.last_error).into());
        }
        let summary: Summary = queue.result(id)?;
        let children = queue.list(&JobFilter::new().parent(id).limit(10_000))?;
        let count = |s: JobStatus| children.iter().filter(|c| c.status == s).count();
        println!(
            "  {:.2}s: {} thumbnails, {} failed; children: {} completed, {} failed, {} cancelled",
            started.elapsed().as_secs_f64(),
            summary.thumbnails,
            summary.failed.len(),
            count(JobStatus::Completed),
            count(JobStatus::Failed),
            count(JobStatus::Cancelled),
        );
        for failure in summary.failed.iter().take(3) {
            println!("  failed: {failure}");
        }
    }
    worker.shutdown();
    Ok(())
}
