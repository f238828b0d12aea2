"""dogbreed: classify dog photos into the 120 Stanford Dogs breeds.

The Python API (the same calls the CLI makes; see ``dogbreed.api``)::

    import dogbreed

    model = dogbreed.load_model()                 # the default model; or load_model("efficientnet_b0")
    for p in model.predict(["rex.jpg"]):
        print(p.breed, f"{p.probability:.1%}", p.is_dog)

    store = dogbreed.Store()                      # photos, predictions, jobs and runs in SQLite
    dogbreed.train(dataset="~/data/stanford-dogs", epochs=10)

Importing this package is cheap: the API loads on first use.
"""

from typing import TYPE_CHECKING, Any

from dogbreed.version import __version__

__all__ = ["DogbreedError", "Model", "Prediction", "Store", "__version__", "load_model", "train"]

if TYPE_CHECKING:
    from dogbreed.api import Model, Prediction, Store, load_model, train
    from dogbreed.errors import DogbreedError


def __getattr__(name: str) -> Any:
    if name == "DogbreedError":
        from dogbreed.errors import DogbreedError

        return DogbreedError
    if name in ("Model", "Prediction", "Store", "load_model", "train"):
        from dogbreed import api

        return getattr(api, name)
    raise AttributeError(f"module 'dogbreed' has no attribute {name!r}")
