"""Where pretrained weights come from: the package registries (pinned by version and sha256) and
model hubs (safetensors only)."""
