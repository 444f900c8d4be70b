"""Reading and writing the world's data: videos (bounded, probed, decoded, seeked, written for
browsers), benchmark datasets, and the per-video stage cache."""
