"""Generated numeric code; see derivations/ (never edit by hand)."""
