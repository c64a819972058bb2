"""Training: ``train_loop_per_worker`` (runs on every Ray Train worker), metrics, checkpoints."""
