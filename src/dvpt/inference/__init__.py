"""Using tuned prompts: the portable prompt file (``prompt_file``) and the Python API that
classifies new images with new class names (``api``: ``load_prompt``, ``export_prompt``)."""
