"""Training: fine-tune a transformers model with a PEFT method and log the run to MLflow."""
