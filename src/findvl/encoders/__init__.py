"""Frozen foundation models behind two small contracts: vision features and token features."""
