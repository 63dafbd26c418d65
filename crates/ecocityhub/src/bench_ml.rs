//! `ecocityhub bench --only ml,anomalies`: training time for the demo city and the full shared
//! data, inference latency of a 24-hour forecast, artifact size; precision and recall of the
//! anomaly checks on real data with known faults injected.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use ecocityhub_blobs::ObjectBlobs;
use ecocityhub_ml::anomaly::{check_neighbours, check_series, AnomalyConfig, AnomalyKind};
use ecocityhub_ml::registry::Registry;
use ecocityhub_ml::training::{plan, train_series, TrainRequest};
use ecocityhub_ml::{HourlySeries, TrainOptions, Weather};
use ecocityhub_store::Store;

use crate::import::{self, ImportOptions};

async fn scratch_registry(dir: &Path) -> Result<Registry> {
    let store = ecocityhub_store::connect(&ecocityhub_store::testing::sqlite_url(dir)).await?;
    store.migrate().await?;
    let store: Arc<dyn Store> = Arc::new(store);
    Ok(Registry::new(
        store,
        Arc::new(ObjectBlobs::local(&dir.join("blobs"))?),
    ))
}

/// Trains every forecastable series in the registry's store; returns (models, seconds, bytes).
async fn train_all(registry: &Registry) -> Result<(usize, f64, i64)> {
    let series = plan(registry, &TrainRequest::default()).await?;
    let started = Instant::now();
    let mut bytes = 0;
    for s in &series {
        let outcome =
            train_series(registry, s, &TrainOptions::default(), false, None, "bench").await?;
        bytes += outcome.record.size_bytes;
    }
    Ok((series.len(), started.elapsed().as_secs_f64(), bytes))
}

pub async fn ml_bench(shared: &Path) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let registry = scratch_registry(dir.path()).await?;
    crate::demo::load(registry.store().as_ref(), false).await?;
    let (n, secs, bytes) = train_all(&registry).await?;
    println!(
        "ML training, demo city: {n} models (every forecastable hourly series) in {secs:.1} s; artifacts {:.0} kB each on average",
        bytes as f64 / n as f64 / 1024.0
    );

    let full = tempfile::tempdir()?;
    let registry_full = scratch_registry(full.path()).await?;
    for file in ["london-marylebone-aq.csv", "beijing-pm25.csv"] {
        let path = shared.join(file);
        let f = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        import::import(
            registry_full.store().as_ref(),
            f,
            None,
            &crate::demo::known_stations(),
            &ImportOptions::default(),
        )
        .await?;
    }
    let (n, secs, bytes) = train_all(&registry_full).await?;
    println!(
        "ML training, full shared data (London 1998-2004, Beijing 2010-2014): {n} models in {secs:.1} s; artifacts {:.0} kB each on average",
        bytes as f64 / n as f64 / 1024.0
    );

    // Inference: the serving model of London NO2 applied to the last week, as the endpoint does.
    let record = registry_full
        .store()
        .models(None, Some(ecocityhub_domain::Parameter::No2))
        .await?
        .into_iter()
        .next()
        .context("a NO2 model")?;
    let artifact = registry_full.load(&record).await?;
    let station = record.station.clone();
    let to = record.training_to.timestamp() + 3600;
    let series = ecocityhub_ml::data::load_series(
        registry_full.store().as_ref(),
        &station,
        record.parameter,
        to - 8 * 86_400,
        to,
    )
    .await?;
    let weather = ecocityhub_ml::data::load_weather(
        registry_full.store().as_ref(),
        &station,
        to - 8 * 86_400,
        to,
    )
    .await?;
    let (p50, p99) = inference_latency(&artifact.model, &series, &weather);
    println!(
        "ML inference, one 24-hour forecast with intervals (London NO2 model, {} trees): p50 {:.3} ms, p99 {:.3} ms over 10,000 forecasts",
        artifact.meta.trees, p50, p99
    );
    Ok(())
}

fn inference_latency(
    model: &ecocityhub_ml::ForecastModel,
    series: &HourlySeries,
    weather: &Weather,
) -> (f64, f64) {
    let origin = series.last_observed().unwrap_or(0);
    let mut times: Vec<f64> = (0..10_000)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(model.forecast_from(series, weather, origin));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

/// A seeded generator, so every run injects the same faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn read_column(path: &Path, column: &str, scale: f64) -> Result<Vec<(i64, f64)>> {
    let mut csv =
        csv::Reader::from_path(path).with_context(|| format!("open {}", path.display()))?;
    let headers = csv.headers()?.clone();
    let time = headers
        .iter()
        .position(|h| h == "time")
        .context("time column")?;
    let col = headers
        .iter()
        .position(|h| h == column)
        .context("value column")?;
    let mut out = Vec::new();
    for r in csv.records() {
        let r = r?;
        if let Ok(v) = r[col].parse::<f64>() {
            let t = chrono::DateTime::parse_from_rfc3339(&r[time])?.timestamp();
            out.push((t, v * scale));
        }
    }
    Ok(out)
}

struct Score {
    true_pos: usize,
    flagged: usize,
    faults: usize,
}

impl Score {
    fn line(&self, what: &str) -> String {
        format!(
            "{what}: precision {:.2} ({} of {} flags are injected faults), recall {:.2} ({} of {} faults flagged)",
            self.true_pos as f64 / self.flagged.max(1) as f64,
            self.true_pos,
            self.flagged,
            self.true_pos as f64 / self.faults.max(1) as f64,
            self.true_pos,
            self.faults
        )
    }
}

/// Injects spikes, stuck runs and drop-outs into a real hourly series and scores the checks.
fn history_checks(name: &str, clean: &[(i64, f64)], seed: u64) {
    let config = AnomalyConfig::default();
    let base = check_series(clean, 24, &config);
    let base_flags = format!(
        "{} flags on the clean series ({} spike, {} stuck, {} jump)",
        base.len(),
        base.iter().filter(|a| a.kind == AnomalyKind::Spike).count(),
        base.iter().filter(|a| a.kind == AnomalyKind::Stuck).count(),
        base.iter().filter(|a| a.kind == AnomalyKind::Jump).count()
    );
    let mut data = clean.to_vec();
    let mut rng = Rng(seed);
    let mut faults: HashMap<usize, AnomalyKind> = HashMap::new();
    let n = data.len();
    let free = |faults: &HashMap<usize, AnomalyKind>, i: usize, len: usize| {
        (i.saturating_sub(30)..i + len + 30).all(|j| !faults.contains_key(&j))
    };
    let mut placed = 0;
    while placed < 300 {
        let i = 48 + rng.below(n - 100);
        let kind = match placed % 3 {
            0 => AnomalyKind::Spike,
            1 => AnomalyKind::Stuck,
            _ => AnomalyKind::Jump,
        };
        let len = if kind == AnomalyKind::Stuck { 12 } else { 1 };
        if !free(&faults, i, len) {
            continue;
        }
        match kind {
            // A spike: a reading several times the level (electrical noise, a wrong unit).
            AnomalyKind::Spike => data[i].1 = data[i].1 * 6.0 + 100.0,
            // A stuck sensor: the last value repeated for 12 hours.
            AnomalyKind::Stuck => {
                for j in i + 1..i + len {
                    data[j].1 = data[i].1;
                    faults.insert(j, kind);
                }
            }
            // A drop-out: the reading falls to zero.
            _ => data[i].1 = 0.0,
        }
        if kind != AnomalyKind::Stuck {
            faults.insert(i, kind);
        }
        placed += 1;
    }
    let found = check_series(&data, 24, &config);
    let index: HashMap<i64, usize> = data.iter().enumerate().map(|(i, p)| (p.0, i)).collect();
    let flagged: HashSet<usize> = found.iter().map(|a| index[&a.ts]).collect();
    let all = Score {
        true_pos: flagged.iter().filter(|i| faults.contains_key(i)).count(),
        flagged: flagged.len(),
        faults: faults.len(),
    };
    println!(
        "anomalies, {name} ({} hourly readings, 300 faults injected): {}; {base_flags}",
        n,
        all.line("all")
    );
    for kind in [AnomalyKind::Spike, AnomalyKind::Stuck, AnomalyKind::Jump] {
        let of_kind: Vec<usize> = faults
            .iter()
            .filter(|(_, k)| **k == kind)
            .map(|(i, _)| *i)
            .collect();
        let caught = of_kind.iter().filter(|i| flagged.contains(i)).count();
        let label = match kind {
            AnomalyKind::Spike => "spikes (x6 + 100)",
            AnomalyKind::Stuck => "stuck 12 h (11 repeated readings each)",
            _ => "drop-outs to 0",
        };
        println!(
            "  {label}: recall {:.2} ({caught} of {})",
            caught as f64 / of_kind.len() as f64,
            of_kind.len()
        );
    }
}

/// Multiplies or divides random station-days of the German network by 5 and checks each day
/// against the stations within 100 km.
fn neighbour_checks(shared: &Path) -> Result<()> {
    let mut coords: HashMap<String, (f64, f64)> = HashMap::new();
    let mut csv = csv::Reader::from_path(shared.join("germany-pm10-rural-stations.csv"))?;
    for r in csv.records() {
        let r = r?;
        coords.insert(r[0].to_string(), (r[1].parse()?, r[2].parse()?));
    }
    let mut values: HashMap<(String, i64), f64> = HashMap::new();
    let mut csv = csv::Reader::from_path(shared.join("germany-pm10-rural.csv"))?;
    for r in csv.records() {
        let r = r?;
        if let Ok(v) = r[2].parse::<f64>() {
            let t = chrono::DateTime::parse_from_rfc3339(&r[0])?.timestamp();
            values.insert((r[1].to_string(), t), v);
        }
    }
    let km = |a: (f64, f64), b: (f64, f64)| {
        let (la1, lo1, la2, lo2) = (
            a.0.to_radians(),
            a.1.to_radians(),
            b.0.to_radians(),
            b.1.to_radians(),
        );
        let h = ((la2 - la1) / 2.0).sin().powi(2)
            + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
        6371.0 * 2.0 * h.sqrt().asin()
    };
    let neighbours: HashMap<&String, Vec<&String>> = coords
        .iter()
        .map(|(s, c)| {
            (
                s,
                coords
                    .iter()
                    .filter(|(o, oc)| *o != s && km(*c, **oc) <= 100.0)
                    .map(|(o, _)| o)
                    .collect(),
            )
        })
        .collect();
    let mut keys: Vec<(String, i64)> = values.keys().cloned().collect();
    keys.sort();
    let mut rng = Rng(7);
    let mut faulty: HashSet<(String, i64)> = HashSet::new();
    while faulty.len() < 500 {
        let k = keys[rng.below(keys.len())].clone();
        if faulty.contains(&k) {
            continue;
        }
        let v = values[&k];
        values.insert(
            k.clone(),
            if rng.next().is_multiple_of(2) {
                v * 5.0
            } else {
                v / 5.0
            },
        );
        faulty.insert(k);
    }
    let config = AnomalyConfig::default();
    let (mut flagged, mut true_pos, mut checked) = (0, 0, 0);
    for (station, t) in &keys {
        let Some(near) = neighbours.get(station) else {
            continue;
        };
        let others: Vec<f64> = near
            .iter()
            .filter_map(|o| values.get(&((*o).clone(), *t)).copied())
            .collect();
        if others.len() < config.min_neighbours {
            continue;
        }
        checked += 1;
        if check_neighbours(*t, values[&(station.clone(), *t)], &others, &config).is_some() {
            flagged += 1;
            if faulty.contains(&(station.clone(), *t)) {
                true_pos += 1;
            }
        }
    }
    let checkable = faulty
        .iter()
        .filter(|(s, t)| {
            neighbours.get(s).is_some_and(|n| {
                n.iter()
                    .filter(|o| values.contains_key(&((**o).clone(), *t)))
                    .count()
                    >= config.min_neighbours
            })
        })
        .count();
    let score = Score {
        true_pos,
        flagged,
        faults: checkable,
    };
    println!(
        "anomalies, German PM10 network ({checked} station-days with 3+ stations within 100 km, 500 days x5 or /5 injected, {checkable} of them checkable): {}",
        score.line("neighbours")
    );
    Ok(())
}

pub fn anomaly_bench(shared: &Path) -> Result<()> {
    let london = shared.join("london-marylebone-aq.csv");
    // ppb → µg/m³ at 25 °C, as the importer converts.
    history_checks(
        "London Marylebone Road NO2",
        &read_column(&london, "no2_ppb", 1.88)?,
        11,
    );
    history_checks(
        "London Marylebone Road PM10",
        &read_column(&london, "pm10_ugm3", 1.0)?,
        12,
    );
    history_checks(
        "Beijing PM2.5",
        &read_column(&shared.join("beijing-pm25.csv"), "pm25_ugm3", 1.0)?,
        13,
    );
    neighbour_checks(shared)
}
