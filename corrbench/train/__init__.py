"""Training: the engine, its data pipeline and the objectives that more than one method trains with."""
