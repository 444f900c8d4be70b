"""The temporal scorer: predictors of each track's next answer embeddings (the paper's S3M, and
the GRU and Transformer of its ablation), their training, and scoring without PyTorch.

Without PyTorch (settings, model files and S3M scoring stay light):
    kinds        the predictor kinds, each declared once (`PREDICTORS`)
    windows      the windows a predictor reads, and per-step errors from its predictions
    numpy_s3m    a trained S3M's forward pass in NumPy: how an S3M scores
    loading      `load_predictor`: a saved predictor in the form that scores
With PyTorch (fit, and scoring with the GRU or Transformer):
    scan         the selective scan (mamba-ssm's fused kernel on CUDA where installed)
    predictors   the networks: Mamba block, S3M, GRU, Transformer; `build_predictor`
    training     AdamW, the split by track, the training loop with early stopping
    model        `TemporalModel`: what `fit` trains and a model folder stores
"""
