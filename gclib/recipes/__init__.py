"""Training recipes, family-agnostic: the shared loop, teacher objectives, distillation, once-for-all training."""
