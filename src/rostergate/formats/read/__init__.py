"""Reading uploads: archive safety, text decoding, CSV tables, format detection, source files."""
