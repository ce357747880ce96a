"""Magnet-voltage data: synthetic generator, loaders, windowing, splits, normalisation."""
