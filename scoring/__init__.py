"""The scoring hot path: one transform and one predict_proba per batch, with explanations.

Knows nothing of HTTP, the database or CSV files.
"""
