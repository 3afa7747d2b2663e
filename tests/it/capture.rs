//! What the observability tests read spans and metrics through: a tracing layer that logs
//! spans, and a process-wide metrics recorder that keeps values.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A queue name of its own, for tests that read the process-wide recorder.
pub fn unique_queue() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("obs-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The process-wide recorder, for metrics counted on a worker's own threads: keeps every
/// counter and gauge value (tests tell theirs apart by queue name, so they may share it).
#[derive(Default)]
pub struct Kept {
    values: Mutex<HashMap<metrics::Key, Arc<AtomicU64>>>,
}

impl Kept {
    pub fn global() -> &'static Kept {
        static KEPT: OnceLock<&'static Kept> = OnceLock::new();
        KEPT.get_or_init(|| {
            let kept: &'static Kept = Box::leak(Box::default());
            metrics::set_global_recorder(kept).expect("no other global recorder in this binary");
            kept
        })
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let values = self.values.lock();
        let found = values.iter().find(|(key, _)| {
            let mut l: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            l.sort_unstable();
            let mut want = labels.to_vec();
            want.sort_unstable();
            key.name() == name && l == want
        });
        found.map(|(_, v)| v.load(Ordering::Relaxed))
    }

    pub fn counter(&self, name: &str, queue: &str, job: &str) -> u64 {
        self.value(name, &[("queue", queue), ("name", job)]).unwrap_or(0)
    }

    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.value(name, labels).map(f64::from_bits)
    }

    fn handle(&self, key: &metrics::Key) -> Arc<AtomicU64> {
        self.values.lock().entry(key.clone()).or_default().clone()
    }
}

impl metrics::Recorder for &'static Kept {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.handle(key))
    }

    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// Spans seen by a test subscriber: name, parent, fields (as recorded, last value wins).
#[derive(Clone, Default)]
pub struct SpanLog(pub Arc<Mutex<Vec<SpanSeen>>>);

#[derive(Debug, Clone)]
pub struct SpanSeen {
    pub name: &'static str,
    /// The parent's position in the log.
    pub parent: Option<usize>,
    pub fields: BTreeMap<String, String>,
}

/// A span's position in the log, kept in its extensions.
struct Position(usize);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanLog {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let span = ctx.span(id).expect("a new span is registered");
        let parent = span.parent().and_then(|p| p.extensions().get::<Position>().map(|p| p.0));
        let mut log = self.0.lock();
        span.extensions_mut().insert(Position(log.len()));
        log.push(SpanSeen { name: attrs.metadata().name(), parent, fields });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(at) = span.extensions().get::<Position>().map(|p| p.0) else { return };
        values.record(&mut Fields(&mut self.0.lock()[at].fields));
    }
}
