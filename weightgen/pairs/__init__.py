"""Paired images per concept: source photos, editors that turn them into targets, the dataset writer.

A concept's folder is named by `prompts.identity.concept_id`, the one id every stage uses.
"""
