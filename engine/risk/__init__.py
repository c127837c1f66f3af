"""Deterioration risk: features, training, the model artifact and scoring."""
