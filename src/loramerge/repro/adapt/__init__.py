"""Merges that optimise on unlabelled data (TARA-Merging): the adaptation stage's loop, modality-free."""
