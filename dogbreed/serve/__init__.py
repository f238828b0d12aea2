"""`dogbreed serve`: the original service's HTTP API, the calls it lacked and a web page, over one store.

``app.create_app`` builds the FastAPI app; the routes only parse requests and render answers (``original`` the
original service's calls in their exact shapes, ``calls`` the richer ones, ``pages`` the HTML); predictions run in
``jobqueue.Supervisor``'s workers. Importing this package imports FastAPI: only `dogbreed serve` does.
"""
