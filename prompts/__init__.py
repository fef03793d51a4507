"""Concept prompts: LLM-built, augmented, combined, deduplicated and split; a shipped set lives in data/.

Other stages read concepts with `load_prompt_set()` (the shipped prompts/data/concepts-v1.json by
default). Building: `prompts.build.build_prompt_set` or `weightgen prompts build`.
"""

from prompts.concepts import (
    CATEGORIES,
    DEFAULT_PROMPT_SET,
    Concept,
    PromptSet,
    concept_id,
    load_prompt_set,
)

__all__ = ["CATEGORIES", "DEFAULT_PROMPT_SET", "Concept", "PromptSet", "concept_id", "load_prompt_set"]
