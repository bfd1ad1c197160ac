"""Experiments built on the engine: the demo, the ablation of dvpt's parts and the speed
benchmark (``dvpt demo``, ``dvpt ablate``, ``dvpt bench``)."""
