//! The profiles the segment benches draw: 20 attributes of mixed types
//! (strings of cardinality 2 to N/2, numbers, booleans, ISO times, arrays
//! of strings; presence 20–100 %) and 5 event names with per-profile
//! counts and times, each profile from its own seeded stream so that any
//! thread can draw any profile. `segments` sends them over HTTP and to
//! DuckDB; `columns` builds the column index from them in process.
//!
//! Included by the benches that use it (`#[path] mod dataset;`).

use serde_json::{json, Map, Value};

/// splitmix64: one independent stream per profile, so load threads and the
/// file writer generate the same profile without sharing state.
pub struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// True with probability `pct` %.
    fn present(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// 2024-01-01T00:00:00Z; generated times span two years from it.
pub const T0: i64 = 1_704_067_200_000;
pub const SPAN_MS: u64 = 2 * 365 * 86_400_000;

pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("time in range")
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

pub const EVENTS: [(&str, u64); 5] = [
    ("open", 7),
    ("click", 5),
    ("purchase", 3),
    ("share", 2),
    ("login", 6),
];
pub const PLANS: [&str; 5] = ["free", "basic", "Gold", "gold", "SILVER"];
pub const DEVICES: [&str; 10] = [
    "ios", "android", "web", "ipad", "tv", "watch", "car", "desktop", "kiosk", "other",
];

/// One profile: its `/users/track` attributes object, its events, and its
/// DuckDB row (times as epoch ms, event counts and last times as columns).
pub struct Profile {
    pub attrs: Map<String, Value>,
    pub events: Vec<(&'static str, i64)>,
    pub row: Map<String, Value>,
}

pub fn uid_name(i: u32) -> String {
    format!("user_{i:09}")
}

pub fn profile(seed: u64, n: u32, i: u32) -> Profile {
    let mut r = Rng(seed.wrapping_mul(0x1000_0000_01B3) ^ u64::from(i).wrapping_mul(0x9E37));
    let mut attrs = Map::new();
    let mut row = Map::new();
    let id = uid_name(i);
    attrs.insert("external_id".into(), json!(id));
    row.insert("id".into(), json!(id));
    let n = u64::from(n);
    // (name, presence %, value as sent, value in the row)
    let mut put =
        |name: &str, pct: u64, r: &mut Rng, f: &mut dyn FnMut(&mut Rng) -> (Value, Value)| {
            if r.present(pct) {
                let (a, b) = f(r);
                attrs.insert(name.into(), a);
                row.insert(name.into(), b);
            }
        };
    let same = |v: Value| (v.clone(), v);
    let time = |r: &mut Rng| {
        let ms = T0 + r.below(SPAN_MS) as i64;
        (json!(iso(ms)), json!(ms))
    };
    put("plan", 100, &mut r, &mut |r| {
        same(json!(PLANS[r.below(5) as usize]))
    });
    put("country", 95, &mut r, &mut |r| {
        same(json!(format!("C{:02}", r.below(50))))
    });
    put("city", 80, &mut r, &mut |r| {
        same(json!(format!("city_{}", r.below(2000))))
    });
    put("email_domain", 60, &mut r, &mut |r| {
        same(json!(["gmail.com", "corp.example"][r.below(2) as usize]))
    });
    put("ref_code", 30, &mut r, &mut |r| {
        same(json!(format!("r{}", r.below(n / 2))))
    });
    put("device", 70, &mut r, &mut |r| {
        same(json!(DEVICES[r.below(10) as usize]))
    });
    put("language", 85, &mut r, &mut |r| {
        same(json!(format!("lang_{}", r.below(12))))
    });
    put("age", 75, &mut r, &mut |r| same(json!(13 + r.below(78))));
    put("score", 50, &mut r, &mut |r| {
        same(json!(r.below(100_000) as f64 / 100.0))
    });
    put("purchases_total", 40, &mut r, &mut |r| {
        same(json!(r.below(10_001)))
    });
    put("visits", 90, &mut r, &mut |r| same(json!(r.below(501))));
    put("nps", 20, &mut r, &mut |r| same(json!(r.below(11))));
    put("is_premium", 100, &mut r, &mut |r| {
        same(json!(r.below(4) == 0))
    });
    put("opted_in", 60, &mut r, &mut |r| {
        same(json!(r.below(2) == 0))
    });
    put("beta", 20, &mut r, &mut |r| same(json!(r.below(3) == 0)));
    put("signed_up_at", 100, &mut r, &mut |r| time(r));
    put("last_login_at", 70, &mut r, &mut |r| time(r));
    put("trial_end_at", 25, &mut r, &mut |r| time(r));
    put("tags", 60, &mut r, &mut |r| {
        let k = r.below(5);
        same(json!((0..k)
            .map(|_| format!("t{}", r.below(30)))
            .collect::<Vec<_>>()))
    });
    put("interests", 35, &mut r, &mut |r| {
        let k = 1 + r.below(3);
        same(json!((0..k)
            .map(|_| format!("i{}", r.below(200)))
            .collect::<Vec<_>>()))
    });
    let mut events = Vec::new();
    for (name, max) in EVENTS {
        let count = r.below(max);
        let mut last = None::<i64>;
        for _ in 0..count {
            let ms = T0 + r.below(SPAN_MS) as i64;
            last = Some(last.map_or(ms, |l| l.max(ms)));
            events.push((name, ms));
        }
        row.insert(format!("ev_{name}_n"), json!(count));
        if let Some(l) = last {
            row.insert(format!("ev_{name}_last"), json!(l));
        }
    }
    Profile { attrs, events, row }
}
