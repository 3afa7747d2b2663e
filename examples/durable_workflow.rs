//! Placeholder until the flagship example lands.
fn main() {}
