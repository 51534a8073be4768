"""The cross-encoder and how it learns: model loading, batches, losses, fine-tuning,
distillation into fewer layers and training plots."""
