//! Client ids for load generators and a small deterministic random generator, so the
//! bench, the soak program and the simulation tests need no extra crates.

use std::sync::atomic::{AtomicU64, Ordering};

/// SplitMix64: tiny, fast, and good enough for workloads (not for secrets).
#[derive(Clone, Debug)]
pub struct Rng(u64);

/// Milliseconds since the Unix epoch, from the wall clock.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Seeded from the kernel: for ids that must not repeat between runs, threads or
    /// processes (client ids, idempotency keys). A clock-based seed did repeat.
    pub fn from_kernel() -> Rng {
        let seed = purse_app::secrets::random_bytes::<8>().expect("/dev/urandom is readable");
        Rng(u64::from_le_bytes(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn uuid_text(bits: u128) -> String {
    let h = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A random (version 4) UUID.
pub fn uuid_v4(rng: &mut Rng) -> String {
    let bits = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
    let bits = (bits & !(0xF << 76)) | (0x4 << 76);
    let bits = (bits & !(0x3 << 62)) | (0x2 << 62);
    uuid_text(bits)
}

/// A time-ordered version 7 UUID (RFC 9562): 48 bits of milliseconds, the version, a
/// 12-bit counter in `rand_a` (so ids of one millisecond keep their order and their high
/// 64 bits stay distinct), the variant, and 62 random bits.
pub fn uuid_v7(unix_ms: u64, rng: &mut Rng) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seq = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xFFF;
    let bits = (u128::from(unix_ms & 0xFFFF_FFFF_FFFF) << 80)
        | (0x7 << 76)
        | (u128::from(seq) << 64)
        | (0x2 << 62)
        | u128::from(rng.next_u64() & 0x3FFF_FFFF_FFFF_FFFF);
    uuid_text(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_ids_of_one_millisecond_have_distinct_high_halves() {
        let mut rng = Rng::new(1);
        let ids: Vec<String> = (0..100).map(|_| uuid_v7(1_700_000_000_000, &mut rng)).collect();
        let mut highs: Vec<&str> = ids.iter().map(|i| &i[..18]).collect();
        highs.sort();
        highs.dedup();
        assert_eq!(highs.len(), 100);
        assert!(ids.iter().all(|i| &i[14..15] == "7" && "89ab".contains(&i[19..20])));
    }
}
