"""Demo data for the README's quick start."""
