"""Noise schedulers (MONAI's, built from config.json) and the reconstruction engine."""
