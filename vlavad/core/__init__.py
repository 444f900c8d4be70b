"""What every stage shares: one-line errors, declared schemas, atomic files, stage timing, the
backend registry, the records the stages hand each other, and the limits on any input."""
