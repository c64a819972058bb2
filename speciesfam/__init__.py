"""speciesfam: clean an image collection of living things and search for its best classifier.

Importing this package is cheap: TensorFlow, torch and Ray are imported only inside the stage that
needs them (see ``speciesfam._lazy``), so ``import speciesfam`` and ``speciesfam --help`` stay fast.
"""

__version__ = "0.1.0"
