"""devkit: see README.md for what it will serve."""
