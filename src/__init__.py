"""Diffusion-model OOD detection for RF signals: the library behind the top-level scripts."""
