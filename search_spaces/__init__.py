"""Search spaces, one module each: ``get_search_space(smoke: bool) -> dict`` of Ray Tune domains.

A space's keys are the trial's hyperparameters (see ``speciesfam.train.loop.DEFAULT_HP`` and the model
builders); ``model`` picks the architecture from ``speciesfam.registry.MODELS``. Pass your own module with
``speciesfam tune ... --space my_pkg.my_space``.
"""
