//! Zipf-distributed picks over a ranked list: the first item is asked for most, as a
//! real app's hot content is, so caches and in-flight de-duplication see realistic reuse.

use rand::Rng;

/// A Zipf law over `n` ranks: rank `k` (0-based) has weight `1 / (k + 1)^s`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (0..n.max(1))
            .map(|k| {
                total += 1.0 / ((k + 1) as f64).powf(s);
                total
            })
            .collect();
        Self { cumulative }
    }

    /// A rank in `0..n`.
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let target = rng.r#gen::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c < target)
            .min(self.cumulative.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_first_rank_is_picked_most_and_every_pick_is_in_range() {
        let zipf = Zipf::new(200, 1.0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = vec![0u32; 200];
        for _ in 0..20_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        assert!(counts[0] > counts[10]);
        assert!(counts[10] > counts[150]);
        // Rank 0 has weight 1 / H(200) ≈ 17 %.
        assert!((2_800..4_000).contains(&counts[0]), "{}", counts[0]);
    }
}
