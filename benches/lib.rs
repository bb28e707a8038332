//! Criterion benchmarks of the hot path live in `benches/`; see docs/PERFORMANCE.md.
