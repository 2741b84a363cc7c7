"""Signal data: the embedded synthetic RF generator, raw-to-processed preparation and datasets."""
