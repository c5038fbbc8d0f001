//! A stateful fake Convox v3 rack for development and tests (being written).
