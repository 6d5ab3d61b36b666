"""PostgreSQL v3 protocol: framing and messages (`codec`), type OIDs and value codecs (`types`)."""
