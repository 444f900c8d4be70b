"""The temporal scorer: predictors of each track's next answer embeddings (the paper's S3M, and
the GRU and Transformer of its ablation), their training, and scoring without PyTorch."""
