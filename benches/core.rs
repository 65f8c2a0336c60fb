//! Criterion benches for the core, each beside the naive peer SPEC §9 names
//! (a `HashSet` per set) where one exists, so BENCHMARKS.md can report
//! ratios measured in the same run.
//!
//! `cargo bench --bench core` (set `COHORTD_BENCH_PROFILES` to change the
//! universe; default 10,000,000 as in the issues' targets).

use std::collections::{BTreeMap, HashSet};
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use roaring::RoaringBitmap;
use serde_json::json;

use cohortd::engine::cohort::apply_ops;
use cohortd::model::{CohortKey, Identifier};
use cohortd::profiles::ProfileStore;
use cohortd::segment::{self, CohortSets};

/// A small deterministic generator (no dependency, same data every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

fn universe() -> u32 {
    std::env::var("COHORTD_BENCH_PROFILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn profiles(n: u32) -> ProfileStore {
    let mut s = ProfileStore::new();
    for i in 0..n {
        s.upsert_external(&format!("user_{i:09}"), true);
    }
    s
}

fn random_set(rng: &mut Lcg, n: u32, universe: u32) -> RoaringBitmap {
    let mut ids: Vec<u32> = (0..n).map(|_| rng.below(universe)).collect();
    ids.sort_unstable();
    ids.dedup();
    RoaringBitmap::from_sorted_iter(ids).expect("sorted")
}

fn segments(c: &mut Criterion) {
    let n = universe();
    let store = profiles(n);
    let mut rng = Lcg(7);
    let keys: Vec<CohortKey> = ["a", "b", "c"]
        .iter()
        .map(|k| CohortKey::new("p", k))
        .collect();
    let sets: BTreeMap<CohortKey, Arc<RoaringBitmap>> = keys
        .iter()
        .map(|k| (k.clone(), Arc::new(random_set(&mut rng, n / 10, n))))
        .collect();
    let filter = segment::parse(
        &json!({"and": [
            {"cohort": {"partner": "p", "cohort_id": "a"}},
            {"cohort": {"partner": "p", "cohort_id": "b"}},
            {"not": {"cohort": {"partner": "p", "cohort_id": "c"}}}
        ]}),
        &|k| sets.contains_key(k),
    )
    .expect("valid filter");
    let hashed: Vec<HashSet<u32>> = keys.iter().map(|k| sets[k].iter().collect()).collect();

    let mut g = c.benchmark_group("segment_count_a_and_b_and_not_c");
    g.sample_size(20);
    g.bench_function("cohortd", |b| {
        b.iter(|| black_box(segment::count(&filter, &store, &sets as &dyn CohortSets)))
    });
    g.bench_function("naive_hashset", |b| {
        b.iter(|| {
            let n = hashed[0]
                .iter()
                .filter(|u| hashed[1].contains(u) && !hashed[2].contains(u))
                .count();
            black_box(n)
        })
    });
    g.finish();

    let probe: Vec<u32> = (0..1000).map(|_| rng.below(n)).collect();
    let mut g = c.benchmark_group("batch_membership_1000");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("cohortd", |b| {
        b.iter(|| {
            black_box(segment::contains_many(
                &filter,
                &store,
                &sets as &dyn CohortSets,
                &probe,
            ))
        })
    });
    g.bench_function("naive_hashset", |b| {
        b.iter(|| {
            let r: Vec<bool> = probe
                .iter()
                .map(|u| hashed[0].contains(u) && hashed[1].contains(u) && !hashed[2].contains(u))
                .collect();
            black_box(r)
        })
    });
    g.finish();

    let ids: Vec<Identifier> = (0..1000)
        .map(|_| Identifier::External(format!("user_{:09}", rng.below(n)).into()))
        .collect();
    let mut g = c.benchmark_group("resolve_1000_external_ids");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("cohortd", |b| {
        b.iter(|| {
            let found = ids.iter().filter_map(|id| store.resolve(id)).count();
            black_box(found)
        })
    });
    g.finish();
}

fn deltas(c: &mut Criterion) {
    let n = universe();
    let mut rng = Lcg(11);
    let base = random_set(&mut rng, n / 10, n);
    let ops: Vec<(u32, bool)> = (0..1000).map(|i| (rng.below(n), i % 4 != 0)).collect();
    let hashed: HashSet<u32> = base.iter().collect();

    let mut g = c.benchmark_group("apply_delta_1000_ids_to_1m_member_cohort");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("cohortd", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |set| black_box(apply_ops(set, &ops)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("naive_hashset", |b| {
        b.iter_batched_ref(
            || hashed.clone(),
            |set| {
                for &(u, add) in &ops {
                    if add {
                        set.insert(u);
                    } else {
                        set.remove(&u);
                    }
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, deltas, segments);
criterion_main!(benches);
