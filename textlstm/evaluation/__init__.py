"""Scoring text."""
