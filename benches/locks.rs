//! Benchmarks: keylock against the hand-written alternatives.

fn main() {}
