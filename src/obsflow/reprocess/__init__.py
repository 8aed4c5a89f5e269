"""Reprocessing: plan which products a change affects, and campaigns that remake them."""
