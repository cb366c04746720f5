"""explodebook."""
