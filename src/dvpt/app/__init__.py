"""``dvpt app``: a local Gradio page to try tuned prompts next to zero-shot.

``classify`` holds the logic (the same code path as ``dvpt predict``), ``layout`` the page.
"""
