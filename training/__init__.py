"""Models and evidence: LightGBM training, evaluation, baselines, MLflow registry."""
