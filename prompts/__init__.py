"""Concept prompts: LLM-built, augmented, combined, deduplicated and split; a shipped set lives in data/."""
