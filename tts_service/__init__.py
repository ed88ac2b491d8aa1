"""tts_service: see README.md for what it will serve."""
