//! Local regression (loess) of a short series at its last point, as Beloglazov & Buyya's LR
//! overload detection uses it (pure).
//!
//! The series `y_1 … y_n` (oldest first) is taken at `x_i = i`. Cleveland's loess fits a line
//! by weighted least squares around the point of interest, here the newest, `x_n`: each
//! observation weighs `T(Δ_i)`, the tricube `T(u) = (1 − u³)³` of its distance to `x_n`
//! relative to the farthest, `Δ_i = (x_n − x_i) / (x_n − x_1)`. Recent samples count most and
//! the oldest not at all. [`fit`] returns the line; [`Line::at`] extrapolates it.

/// `y = intercept + slope × x`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Line {
    pub intercept: f64,
    pub slope: f64,
}

impl Line {
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

/// The tricube weight of each of `n` points, the newest last.
pub fn tricube_weights(n: usize) -> Vec<f64> {
    if n < 2 {
        return vec![1.0; n];
    }
    let span = (n - 1) as f64;
    (0..n)
        .map(|i| {
            let distance = (n - 1 - i) as f64 / span;
            (1.0 - distance.powi(3)).powi(3)
        })
        .collect()
}

/// The loess line of `y` (oldest first, at `x = 1 … n`) around its newest point; `None` with
/// fewer than two points.
pub fn fit(y: &[f64]) -> Option<Line> {
    if y.len() < 2 {
        return None;
    }
    let weights = tricube_weights(y.len());
    let (mut sw, mut sx, mut sy) = (0.0, 0.0, 0.0);
    for (i, (w, value)) in weights.iter().zip(y).enumerate() {
        let x = (i + 1) as f64;
        sw += w;
        sx += w * x;
        sy += w * value;
    }
    let (mean_x, mean_y) = (sx / sw, sy / sw);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, (w, value)) in weights.iter().zip(y).enumerate() {
        let dx = (i + 1) as f64 - mean_x;
        sxy += w * dx * (value - mean_y);
        sxx += w * dx * dx;
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    Some(Line {
        intercept: mean_y - slope * mean_x,
        slope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_point_weighs_most_and_the_oldest_nothing() {
        let w = tricube_weights(10);
        assert_eq!(w[9], 1.0);
        assert_eq!(w[0], 0.0);
        assert!(w.windows(2).all(|p| p[0] < p[1]));
    }

    #[test]
    fn a_straight_series_is_fitted_exactly() {
        let y: Vec<f64> = (1..=10).map(|x| 0.1 + 0.05 * f64::from(x)).collect();
        let line = fit(&y).unwrap();
        assert!((line.slope - 0.05).abs() < 1e-12, "{line:?}");
        assert!((line.at(11.0) - 0.65).abs() < 1e-12);
    }

    #[test]
    fn recent_points_pull_the_line() {
        // Flat at 0.2, then a rise in the last three samples: the local fit follows the rise
        // more than an unweighted one would.
        let y = [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.4, 0.6, 0.8];
        let line = fit(&y).unwrap();
        let n = y.len() as f64;
        let mean_x = (n + 1.0) / 2.0;
        let mean_y = y.iter().sum::<f64>() / n;
        let plain: f64 = y
            .iter()
            .enumerate()
            .map(|(i, v)| ((i + 1) as f64 - mean_x) * (v - mean_y))
            .sum::<f64>()
            / (1..=10)
                .map(|x| (f64::from(x) - mean_x).powi(2))
                .sum::<f64>();
        assert!(line.slope > plain, "{} vs {plain}", line.slope);
        assert!(fit(&[0.5]).is_none());
    }
}
