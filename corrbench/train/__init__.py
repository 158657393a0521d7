"""The training engine (``corrbench train``): any method that implements ``api.Trainable`` trains on any
benchmark's training split.

``api``           what a method provides (Trainable, TrainerBase, TrainingRecipe, ...) and the trainer lookup
``options``       TrainOptions and where each ``--set`` key goes
``run``           one run before its first step: method, recipe, identity, directory, data
``loop``          ``train(opts)`` and the TrainingLoop (steps, validation, checkpoints)
``validation``    the per-epoch validation (``corrbench run``'s predict and score loops, in memory)
``checkpoints``   checkpoint files, resume lookup, generator states, run identity
``record``        train.json, log.jsonl and summary.json
``distributed``   torchrun processes and the DDP-wrapped student
``data``          training pairs, masks and preprocessing (method-neutral)
``losses``        objectives that more than one method trains with
"""
