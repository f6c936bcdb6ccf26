"""Slow, obviously correct loop implementations of the textbook definitions.

Tests use them as oracles; readers can use them as the text. Only NumPy is imported.
"""
