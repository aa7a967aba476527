//! The SeaORM example lives in `examples/`.
