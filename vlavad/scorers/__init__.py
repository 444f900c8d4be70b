"""The two scorers of VLAVAD and their fusion: SPA's static rarity of answers, the S3M's temporal
prediction error (`temporal/`), the per-frame curve and its events, and why each event was raised."""
