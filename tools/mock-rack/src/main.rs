//! `mock-rack`: serves the fake rack (being written).

fn main() {}
