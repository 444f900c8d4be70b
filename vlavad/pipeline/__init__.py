"""The run as a whole: its settings, the backends they choose, the pipeline that fits and scores,
the fitted model on disk, and sharded extraction on Ray."""
