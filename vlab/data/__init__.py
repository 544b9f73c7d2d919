"""Figures vlab did not measure: published numbers, each with its source and how sure we are of it."""
