"""One module per measured scenario; each runs one repetition and returns its figures."""
