"""Rostering file formats: archives, CSV reading, validation rules, conversion."""
