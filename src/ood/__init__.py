"""Per-signal reconstruction errors, their result files, and OOD scores and metrics."""
